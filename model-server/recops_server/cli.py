"""``recops-serve``: run the model server, or verify a model directory.

    recops-serve [--model-uri URI] [--host H] [--port P]            settings also from RECOPS_* env
    recops-serve serve [--model-uri URI] [--host H] [--port P]      SageMaker hosting (`docker run IMAGE serve`)
    recops-serve verify DIR                                          exit 0 valid, 2 refused

`serve` is how SageMaker starts a hosting container. It serves the same app (GET /ping and
POST /invocations are always there) and adds SageMaker's side of the contract: the port is
SAGEMAKER_BIND_TO_PORT when SageMaker sets it (else RECOPS_PORT, else 8080, on 0.0.0.0 unless
RECOPS_HOST says otherwise), and without RECOPS_MODEL_URI the model is SageMaker's model data in
/opt/ml/model (the endpoint's ModelDataUrl, unpacked there). Flags win over both.

Exit codes: 0 clean shutdown, 2 invalid settings or a refused model (verify), 1 unexpected.
SIGTERM: readyz turns 503 at once; the server keeps serving for RECOPS_DRAIN_SECONDS (so load
balancers stop sending), then stops accepting, finishes in-flight requests (up to
RECOPS_GRACEFUL_TIMEOUT_SECONDS), flushes payload logs and exits 0. A second signal exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("recops_server")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _server_class() -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's graceful shutdown, preceded by a drain period in which readyz is 503."""

        drain_seconds: float = 0.0
        app_state: Any = None
        _timer: threading.Timer | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Not recorded in _captured_signals: a graceful shutdown ends with exit code 0.
            if self.app_state is not None:
                self.app_state.draining = True
            if self._timer is not None or self.should_exit or self.drain_seconds <= 0:
                if self.should_exit:
                    self.force_exit = True
                self.should_exit = True
                return
            logging.getLogger("recops_server").info(
                "Received signal %d; draining for %.1fs before shutting down", sig, self.drain_seconds
            )
            self._timer = threading.Timer(self.drain_seconds, lambda: setattr(self, "should_exit", True))
            self._timer.daemon = True
            self._timer.start()

    return DrainingServer


SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def sagemaker_overrides(environ: Mapping[str, str], model_dir_present: bool) -> dict[str, Any]:
    """Settings that `recops-serve serve` (SageMaker's container argument) takes from SageMaker's contract."""
    out: dict[str, Any] = {}
    port = environ.get("SAGEMAKER_BIND_TO_PORT", "").strip()
    if port:
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise ValueError(f"SAGEMAKER_BIND_TO_PORT={port!r} is not a TCP port (1..65535)")
        out["port"] = int(port)
    if not environ.get("RECOPS_MODEL_URI") and model_dir_present:
        out["model_uri"] = SAGEMAKER_MODEL_DIR
    return out


def uvicorn_config(app: Any, settings: Any) -> Any:
    """The uvicorn configuration of ``app`` (from ``create_app(settings)``): uvloop and httptools when
    installed, with the hot route answered from the protocol (rawpath.py), access log per settings."""
    import uvicorn

    try:
        from .rawpath import protocol_class

        http: Any = protocol_class(app.state.recops)
    except ImportError:  # no httptools: uvicorn's h11 protocol, every request through ASGI
        http = "auto"
    return uvicorn.Config(
        app,
        http=http,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds) or None,
        lifespan="on",
        server_header=False,
    )


def serve(argv: list[str], *, sagemaker: bool = False) -> int:
    parser = argparse.ArgumentParser(prog="recops-serve", description="Serve a Recops model over HTTP.")
    parser.add_argument("--model-uri", help="model dir, models:/<name>@<alias> or models:/<name>/<version>")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)

    from .model_store import make_source
    from .settings import ServerSettings

    overrides = {k: v for k, v in {"model_uri": args.model_uri, "host": args.host, "port": args.port}.items() if v}
    try:
        if sagemaker:
            overrides = {**sagemaker_overrides(os.environ, Path(SAGEMAKER_MODEL_DIR).is_dir()), **overrides}
        settings = ServerSettings(**overrides)
        make_source(settings.model_uri, settings.model_name, settings.download_dir, settings.model_version)
    except (ValidationError, ValueError) as exc:
        print(json.dumps({"ok": False, "reason": "InvalidConfig", "message": str(exc)}), file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)

    from .app import create_app

    app = create_app(settings)
    config = uvicorn_config(app, settings)
    server = _server_class()(config)
    server.drain_seconds = settings.drain_seconds
    server.app_state = app.state.recops
    server.run()
    return 0 if server.started else 1


def verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recops-serve verify", description="Verify a model directory.")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    from recops_model import ModelRejected, load_model

    from .model_store import locate_model_dir

    try:
        model = load_model(locate_model_dir(Path(args.path)))
    except ModelRejected as exc:
        print(json.dumps({"ok": False, "reason": exc.reason, "message": exc.message}))
        return 2
    print(
        json.dumps(
            {
                "ok": True,
                "reason": "Verified",
                "message": f"{args.path} is a valid {model.kind} model",
                "digest": model.digest,
                "algorithm": model.algorithm,
                "users": model.n_users,
                "items": model.n_items,
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        return verify(argv[1:])
    sagemaker = bool(argv) and argv[0] == "serve"
    try:
        return serve(argv[1:] if sagemaker else argv, sagemaker=sagemaker)
    except KeyboardInterrupt:  # pragma: no cover
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
