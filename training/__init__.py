"""Model, data, losses, training loop, evaluation and export (installed as ``acfd.training``)."""
