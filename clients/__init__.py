"""gRPC clients of the served ACFD ensemble."""
