"""The Recops API (group recops.dev, version v1alpha1) as typed models: the single source of truth.

`crds/*.yaml` are generated from these models (`make crds`), never edited by hand.
"""

from .base import ANNOTATION_PREFIX, API_VERSION, CATEGORY, FINALIZER, GROUP, VERSION, Condition, KindInfo
from .driftmonitor import DRIFT_MONITOR, DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from .featurepipeline import FEATURE_PIPELINE, FeaturePipeline, FeaturePipelineSpec, FeaturePipelineStatus
from .recommenderdeployment import (
    RECOMMENDER_DEPLOYMENT,
    RecommenderDeployment,
    RecommenderDeploymentSpec,
    RecommenderDeploymentStatus,
)
from .trainingrun import TRAINING_RUN, TrainingRun, TrainingRunSpec, TrainingRunStatus

# Each kind: its metadata, its whole-object model, its spec model and its status model.
KINDS: list[tuple[KindInfo, type, type, type]] = [
    (FEATURE_PIPELINE, FeaturePipeline, FeaturePipelineSpec, FeaturePipelineStatus),
    (TRAINING_RUN, TrainingRun, TrainingRunSpec, TrainingRunStatus),
    (RECOMMENDER_DEPLOYMENT, RecommenderDeployment, RecommenderDeploymentSpec, RecommenderDeploymentStatus),
    (DRIFT_MONITOR, DriftMonitor, DriftMonitorSpec, DriftMonitorStatus),
]

__all__ = [
    "ANNOTATION_PREFIX", "API_VERSION", "CATEGORY", "DRIFT_MONITOR", "FEATURE_PIPELINE", "FINALIZER", "GROUP",
    "KINDS", "RECOMMENDER_DEPLOYMENT", "TRAINING_RUN", "VERSION", "Condition", "DriftMonitor",
    "DriftMonitorSpec", "DriftMonitorStatus", "FeaturePipeline", "FeaturePipelineSpec",
    "FeaturePipelineStatus", "KindInfo", "RecommenderDeployment", "RecommenderDeploymentSpec",
    "RecommenderDeploymentStatus", "TrainingRun", "TrainingRunSpec", "TrainingRunStatus",
]
