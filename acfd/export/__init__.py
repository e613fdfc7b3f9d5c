"""Export: the fused network to ONNX (``graph``), its int8 form (``quantize``) and a TensorRT engine
(``tensorrt_build``), described by the typed manifest of ``acfd.inference.manifest``; ``acfd export``
is ``cli``."""
