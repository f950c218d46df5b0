"""recops_training: the TrainingRun job program (``recops-train run --config FILE``).

Modules: ``algorithms`` (popularity, itemknn, puresvd, ease, rp3beta), ``data`` (snapshot reading,
temporal holdout), ``evaluation`` (vectorised ranking metrics), ``report`` (PNG + HTML),
``tracking`` (MLflow helpers, promotion decision), ``runner`` (the job), ``cli``.
"""

__version__ = "0.1.0"
