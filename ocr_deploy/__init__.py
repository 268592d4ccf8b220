"""ocr-deploy runtime: HRNet-OCR segmentation on ONNX Runtime or TensorRT, no torch needed."""

__version__ = "0.1.0"
