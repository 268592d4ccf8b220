"""The shipped demo: a small HRNet-OCR trained on procedural street scenes, and a sample video.

How they were made, and how to make them again: README.md in this folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_CHECKPOINT = "demo_street_w18s1.pth"  # the reference's release layout ('model.' keys)
DEMO_MODEL = "demo_street_w18s1.onnx"  # its verified export: raw uint8 BGR in, uint8 labels out
DEMO_VIDEO = "demo_street.mp4"  # 10 s of a held-out generated street, 256x512 at 10 fps


def asset(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


def demo_model() -> Path:
    return asset(DEMO_MODEL)


def demo_checkpoint() -> Path:
    return asset(DEMO_CHECKPOINT)


def demo_video() -> Path:
    return asset(DEMO_VIDEO)
