"""Generated cartoon scenes with their face boxes: the test, demo and load-test data.

``acfd synth`` writes them as data sets.
"""
