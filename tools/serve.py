#!/usr/bin/env python
"""Serve a trained run over HTTP: a page to upload an X-ray and a JSON API (FastAPI + uvicorn).

    tools/serve.py --run output/demo_clinical                     # http://127.0.0.1:8000/
    tools/serve.py --config-file cfg.yaml MODEL.WEIGHTS model_final.pth --port 8080
    tools/serve.py --run output/demo_clinical --workers 4 --api-key "$KEY" --host 0.0.0.0

Routes: ``GET /`` the page, ``GET /api/health``, ``GET /api/model``, ``POST /api/predict``
(multipart ``file`` + clinical fields), OpenAPI at ``/openapi.json`` and ``/docs``; see
:mod:`cxr_det.serve.app`. The model is built from the run's own record as in
``tools/predict.py`` (``KEY VALUE`` overrides allowed, e.g. ``MODEL.DEVICE cpu`` or
``MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.01`` for the lowest score returned) and loaded once
per worker. Uploads are decoded in memory, never written to disk. Binds to 127.0.0.1
unless ``--host`` says otherwise; ``--api-key`` (or ``$CXR_SERVE_API_KEY``, which keeps
the key out of the process list) makes ``/api/model`` and ``/api/predict`` require the
header ``X-API-Key``.
"""
import argparse
import os
import sys

import cxr_det  # noqa: F401  (detectron2 compatibility fixes first)
import cxr_det.modeling  # noqa: F401  (registers backbones and meta-architectures)

from detectron2.utils.logger import setup_logger

from cxr_det.engine import RunConfigError, inference_config

API_KEY_ENV = "CXR_SERVE_API_KEY"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="", help="training OUTPUT_DIR or checkpoint (.pth) to serve")
    parser.add_argument("--config-file", default="", help="config (optional with --run; else give MODEL.WEIGHTS)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body in MiB (413 above)")
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own model")
    parser.add_argument("--api-key", default=None,
                        help=f"require header X-API-Key on /api/model and /api/predict (default: ${API_KEY_ENV})")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn's log level")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if not args.run and not args.config_file:
        parser.error("give --run OUTPUT_DIR (or a .pth), or --config-file with MODEL.WEIGHTS")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if args.api_key is None:
        args.api_key = os.environ.get(API_KEY_ENV) or None
    return args


def main(argv=None):
    # Imported here so that argument errors answer without loading the web stack.
    from cxr_det.serve.launch import ServiceStartError, run_service

    args = parse_args(argv)
    setup_logger(name="cxr_det", abbrev_name="cxr")
    try:
        cfg = inference_config(args.run, args.config_file, args.opts)  # checked here, before any worker starts
    except RunConfigError as e:
        sys.exit(f"serve.py: {e}")
    try:
        run_service(cfg, run=args.run, config_file=args.config_file, opts=args.opts, host=args.host, port=args.port,
                    workers=args.workers, max_upload_mb=args.max_upload_mb, api_key=args.api_key,
                    log_level=args.log_level)
    except ServiceStartError as e:
        sys.exit(f"serve.py: {e}")


if __name__ == "__main__":
    main()
