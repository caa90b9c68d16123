"""Inference web service and page (issue 13): ``tools/serve.py`` starts it.

:func:`create_app` builds the FastAPI app for one trained run; :func:`app_from_env` is the
uvicorn factory used with several workers; :func:`cxr_det.serve.launch.run_service`
starts uvicorn with one or several. Routes and contract: :mod:`cxr_det.serve.app`;
request/response models: :mod:`cxr_det.serve.schemas`; the page: ``static/``.
"""
from cxr_det.serve.app import app_from_env, create_app

__all__ = ["create_app", "app_from_env"]
