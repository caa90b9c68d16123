"""Start the service with uvicorn (``tools/serve.py``): one process serving the app built
here, or several workers, each building its own app (and model) from settings passed in
``$CXR_SERVE_SETTINGS`` (:func:`cxr_det.serve.app.app_from_env`).
"""
import json
import logging
import os
from typing import Optional, Sequence

import uvicorn

from cxr_det.serve.app import SETTINGS_ENV, create_app

__all__ = ["LOOPBACK", "ServiceStartError", "exposure_warning", "run_service"]

logger = logging.getLogger("cxr_det.serve")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Seconds a worker of --workers N has to start answering uvicorn's health checks (see run_service).
WORKER_HEALTHCHECK_SECONDS = 120


class ServiceStartError(RuntimeError):
    """The app could not be built (bad weights, a checkpoint that does not fit, a clinical
    model without its statistics); the message says why."""


def exposure_warning(host: str, api_key: Optional[str]) -> Optional[str]:
    """The warning for binding ``host`` beyond loopback (plain HTTP; without ``api_key`` open
    to anyone), or None for a loopback address."""
    if host in LOOPBACK:
        return None
    return (f"--host {host}: the service is reachable from other machines; patient images will "
            "travel over plain HTTP" + ("" if api_key else " and anyone can use it (no --api-key)"))


def run_service(cfg, *, run: str = "", config_file: str = "", opts: Sequence[str] = (), host: str = "127.0.0.1",
                port: int = 8000, workers: int = 1, max_upload_mb: float = 64.0, api_key: Optional[str] = None,
                log_level: str = "info"):
    """Serve until interrupted.

    Args:
        cfg: the model's config (:func:`cxr_det.engine.run_config.inference_config` of ``run``,
            ``config_file`` and ``opts``), already checked; used as is with one worker.
        run, config_file, opts: what ``cfg`` was built from; each of several workers
            rebuilds it from them.
        host, port: the address to bind (port in 1..65535).
        workers: processes (>= 1), each with its own model.
        max_upload_mb: largest request body in MiB (> 0; 413 above); api_key: required header
            ``X-API-Key`` on ``/api/model`` and ``/api/predict`` when given.
        log_level: uvicorn's.

    Raises:
        ServiceStartError: with one worker, the app cannot be built
            (:func:`~cxr_det.serve.app.create_app`'s ValueError, RuntimeError or FileNotFoundError).
    """
    warning = exposure_warning(host, api_key)
    if warning:
        logger.warning(warning)
    options = dict(host=host, port=port, log_level=log_level)
    if workers == 1:
        try:
            app = create_app(cfg, max_upload_mb=max_upload_mb, api_key=api_key)
        except (ValueError, RuntimeError, FileNotFoundError) as e:  # CheckpointMismatchError is a RuntimeError
            raise ServiceStartError(str(e)) from e
        uvicorn.run(app, **options)
        return
    # Each worker process builds its own app (and model) from these settings.
    os.environ[SETTINGS_ENV] = json.dumps({
        "run": run, "config_file": config_file, "opts": list(opts),
        "max_upload_mb": max_upload_mb, "api_key": api_key,
    })
    # A worker answers uvicorn's health check only once it has re-imported the tool and
    # unpickled its settings: seconds on a busy machine (torch, detectron2, scikit-learn), more
    # than uvicorn's default 5 s, after which the supervisor kills and restarts it forever.
    uvicorn.run("cxr_det.serve.app:app_from_env", factory=True, workers=workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS, **options)
