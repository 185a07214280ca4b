"""Running models: ONNX Runtime sessions, request rows and their collation, the dynamic
batcher, warm-up, and the one module that off-loads CPU work to threads."""
