"""Evaluation: AP@0.5 (VOC all-point), single- and multi-scale inference, PR plots."""
