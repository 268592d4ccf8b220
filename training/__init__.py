"""Training utilities: procedural data for the demo segmentation model."""
