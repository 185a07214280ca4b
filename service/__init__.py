"""mmserve: an async inference service for multimodal ONNX models."""

__version__ = "0.1.0"
