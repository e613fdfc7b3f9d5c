"""The ACFD network: ACB, AOSA, VoVNetV3, ABi-FPN, head, and the exportable ``Predictor``."""

from acfd.training.model.acb import ACB, ConvBN
from acfd.training.model.detector import ACFD, build_model
from acfd.training.model.predictor import PixelPredictor, Predictor

__all__ = ["ACB", "ACFD", "ConvBN", "PixelPredictor", "Predictor", "build_model"]
