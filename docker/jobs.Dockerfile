# syntax=docker/dockerfile:1.7
# The batch jobs: `recops-features` (FeaturePipeline), `recops-train` (TrainingRun) and `recops-drift`
# (DriftMonitor checks); the operator sets the command of each Job. Tag it as ghcr.io/recops/feature-jobs,
# ghcr.io/recops/training and ghcr.io/recops/drift (the default images of the CRDs and the drift check).
#   docker build -f docker/jobs.Dockerfile -t ghcr.io/recops/feature-jobs:0.1.0 .  (context: repo root)
# Multi-stage: the builder makes the wheel and a virtualenv with the `features,training,drift` extras; the final
# stage is a fresh python slim image with only that virtualenv, running as the non-root UID 10001 (no compilers,
# no pip cache, no source tree). Pin the base by digest in CI:
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/recops
COPY pyproject.toml README.md hatch_build.py ./
COPY operator/recops operator/recops
COPY feature-jobs/recops_features feature-jobs/recops_features
COPY training/recops_training training/recops_training
COPY model-format/recops_model model-format/recops_model
COPY model-server/recops_server model-server/recops_server
COPY drift/recops_drift drift/recops_drift
# Every dependency ships manylinux wheels, so no compiler is needed even here (without one the int8
# scoring kernel is skipped: the serving image builds it, see server.Dockerfile).
RUN /opt/recops/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/recops/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/recops/bin/pip install --no-cache-dir "$(ls /wheels/recops-*.whl)[features,training,drift]" \
 && /opt/recops/bin/recops-features --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ghcr.io/recops/feature-jobs:0.1.0" \
      org.opencontainers.image.source="https://github.com/recops/recops" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/recops/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp OPENBLAS_NUM_THREADS=1
RUN groupadd --gid 10001 recops \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin recops
COPY --from=builder /opt/recops /opt/recops
USER 10001:10001
WORKDIR /tmp
# Batch jobs have no health endpoint: Kubernetes tracks them by exit code (docs/CONTRACTS.md).
HEALTHCHECK NONE
# No ENTRYPOINT: each Job sets `command` (recops-features, recops-train or recops-drift).
CMD ["recops-features", "--help"]
