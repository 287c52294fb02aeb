"""Page images: loading and hashing images, PDF rendering, OCR, pixel limits and the yes/no page
prompt shared by `vlm-page` and `vllm-page`. Knows no backend's config class."""
