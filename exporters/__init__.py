"""Build-time tools: the HRNet-OCR network, checkpoint loading, ONNX export and verification."""
