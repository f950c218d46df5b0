"""Recops: a Kubernetes operator for a recommender's whole ML lifecycle."""

__version__ = "0.1.0"
