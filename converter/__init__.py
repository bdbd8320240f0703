"""Workstation side of edge-ser: corpora, training, int8 conversion, evaluation.

Needs TensorFlow (requirements-dev.txt). Nothing in ``edge_ser`` imports this package.
"""
