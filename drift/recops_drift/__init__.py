"""Recops drift detection: reference profiles, drift statistics, reports, metrics and the check program."""

__version__ = "0.1.0"
