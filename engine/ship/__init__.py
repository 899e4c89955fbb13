"""After training: exports (GGUF, ONNX), served endpoints and publishing the studio as a Space; each runs as its
own process, like a run."""
