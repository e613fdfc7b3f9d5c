"""Serving: Triton Inference Server launcher and model-repository builder (installed as ``acfd.serving``)."""
