"""Moving models and data in and out: export (SavedModel, LiteRT, ONNX), PyTorch weight import,
TFDS builders."""
