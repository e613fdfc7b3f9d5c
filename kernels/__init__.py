"""Training kernels (OpenAI Triton) with their PyTorch references, and NMS (NumPy / CuPy)."""
