"""`ocr-deploy explain`: what the object-context block saw on one frame.

OCR families: the K soft object regions and each chosen pixel's relation to them; OCNet
families: each chosen pixel's self-attention map (one per pyramid partition for Pyramid-OC).
The numbers are read by forward hooks from the network the export uses (capture.py), never
computed a second time. Modules: request (request/result/error), capture (hooks), pixels
(which pixels), explanation (the numbers per pixel), figures (matplotlib), report (JSON), job.
"""

from exporters.explain.job import run_explain
from exporters.explain.request import ExplainError, ExplainRequest, ExplainResult

__all__ = ["ExplainError", "ExplainRequest", "ExplainResult", "run_explain"]
