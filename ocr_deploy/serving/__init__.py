"""Serving artifacts over the network on Triton Inference Server (PyTriton): `ocr-deploy serve`.

protocol.py: tensor names and published metadata, shared with the client (ocr_deploy.remote);
handler.py: the inference callable; server.py: options, start-up checks, the server's life.
PyTriton is imported only when a server starts.
"""

from ocr_deploy.serving.protocol import ServingError
from ocr_deploy.serving.server import ServeOptions, serve

__all__ = ["ServeOptions", "ServingError", "serve"]
