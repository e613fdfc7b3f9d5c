"""ACFD: Asymmetric Cartoon Face Detector.

The repository folders ``training/``, ``kernels/`` and ``clients/`` are installed as the
subpackages ``acfd.training``, ``acfd.kernels`` and ``acfd.clients`` (see pyproject.toml).
"""

__version__ = "0.1.0"
