"""Model mechanics shared by the backends: torch device and dtype, ONNX export and quantization for
every model kind, batch planning, pair templates and long documents, GGUF conversion. Knows no
backend's config class."""
