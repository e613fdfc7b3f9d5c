"""ACFD: Asymmetric Cartoon Face Detector.

The repository folders ``training/``, ``kernels/`` and ``clients/`` are installed as the
subpackages ``acfd.training``, ``acfd.kernels`` and ``acfd.clients`` (see pyproject.toml).
The Python API: ``from acfd import Detector`` (``acfd.detector``).
"""

__version__ = "0.1.0"
__all__ = ["Detector", "Prediction", "__version__"]


def __getattr__(name: str):
    """``from acfd import Detector`` without importing it (and torch) for every ``acfd`` command."""
    if name in ("Detector", "Prediction"):
        from acfd import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'acfd' has no attribute {name!r}")
