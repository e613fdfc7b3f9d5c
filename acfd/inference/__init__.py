"""Inference shared by evaluation, serving, clients and the Python API: CPU engines for exported models."""
