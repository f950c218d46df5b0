"""Recops FeaturePipeline job: clickstream (S3) + profiles (PostgreSQL) -> versioned feature snapshots.

Public surface:

- :mod:`recops_features.config`: the job's configuration model (``FeaturePipelineConfig``).
- :mod:`recops_features.transform`: the built-in pure feature transform.
- :mod:`recops_features.datagen`: the deterministic synthetic clickstream generator.
- :mod:`recops_features.job`: ``run_job(config) -> JobResult`` (the ``recops-features run`` program).
- :mod:`recops_features.cli`: the ``recops-features`` command line.
"""

__version__ = "0.1.0"
