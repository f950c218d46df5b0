# syntax=docker/dockerfile:1.7
# The model server (FastAPI): `recops-serve`. The operator-built Deployment probes /readyz and /healthz on
# port 8080. SageMaker hosting starts it as `docker run IMAGE serve` (the argument replaces CMD):
# `recops-serve serve` answers GET /ping and POST /invocations on 0.0.0.0:8080, or on SAGEMAKER_BIND_TO_PORT
# when SageMaker sets it (hence the accept-bind-to-port label); docs/AWS.md has the whole contract.
#   docker build -f docker/server.Dockerfile -t ghcr.io/recops/model-server:0.1.0 .  (context: repo root)
# Multi-stage: the builder makes the wheel and a virtualenv with the `server` extras; the final
# stage is a fresh python slim image with only that virtualenv, running as the non-root UID 10001 (no compilers,
# no pip cache, no source tree). Pin the base by digest in CI:
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/recops
# gcc builds the int8 scoring kernel (recops_model/_qscore.so; hatch_build.py); the final stage has no compiler
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md hatch_build.py ./
COPY operator/recops operator/recops
COPY feature-jobs/recops_features feature-jobs/recops_features
COPY training/recops_training training/recops_training
COPY model-format/recops_model model-format/recops_model
COPY model-server/recops_server model-server/recops_server
COPY drift/recops_drift drift/recops_drift
# Every dependency ships manylinux wheels; only our own kernel is compiled.
RUN /opt/recops/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/recops/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/recops/bin/pip install --no-cache-dir "$(ls /wheels/recops-*.whl)[server]" \
 && /opt/recops/bin/recops-serve --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ghcr.io/recops/model-server:0.1.0" \
      org.opencontainers.image.source="https://github.com/recops/recops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port="true"
ENV PATH=/opt/recops/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp OPENBLAS_NUM_THREADS=1
RUN groupadd --gid 10001 recops \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin recops
COPY --from=builder /opt/recops /opt/recops
USER 10001:10001
WORKDIR /tmp
# Kubernetes probes /readyz and /healthz (operator-built Deployment); this HEALTHCHECK is for plain `docker
# run`.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8080/healthz\", timeout=2)"]
ENTRYPOINT ["recops-serve"]
CMD ["--host=0.0.0.0", "--port=8080"]
