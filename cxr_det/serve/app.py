"""The inference web service: FastAPI app around one trained run (issue 13).

Routes (JSON bodies typed in :mod:`cxr_det.serve.schemas`, OpenAPI at ``/openapi.json``):

- ``GET /`` the page (``static/index.html``), ``GET /static/...`` its assets;
- ``GET /api/health`` -> ``{"status": "ok"}`` (never needs the API key);
- ``GET /api/model`` -> classes, masks/ellipses, score defaults, clinical fields;
- ``POST /api/predict`` (multipart: ``file``, one optional text field per clinical feature,
  optional ``score_threshold``) -> image size, detections, image-level scores, the clinical
  values used, warnings.

Errors are ``{"detail": "..."}``: 400 for an unreadable upload or a bad field, 401 without
the API key (when one is set), 413 over the upload limit, 422 for a malformed form (e.g.
``file`` sent as text). Clinical values never cause an error: text in a numeric field is
cleaned as in training (status ``not_a_number``), unknown fields are warnings. Uploads are decoded from memory
and never written to disk; nothing of a DICOM header other than the model's features
(age, sex) is read out, and nothing of it is echoed back.

The model and its clinical statistics load once, in :func:`create_app`. One inference runs
at a time per process (the model call holds a lock; decoding does not): run several
workers (``tools/serve.py --workers N``) to serve requests in parallel, each with its own
model, built by :func:`app_from_env`.
"""
import base64
import inspect
import json
import logging
import math
import os
import secrets
import threading
from pathlib import Path, PurePath
from typing import Optional

import cv2
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

import cxr_det
from cxr_det.data.image_io import is_dicom, read_image, read_options_from_config
from cxr_det.engine.inference import prediction_record
from cxr_det.engine.predictor import CXRPredictor
from cxr_det.engine.run_config import class_names_of
from cxr_det.serve import clinical as clinical_io
from cxr_det.serve.limits import UploadLimit, keep_uploads_in_memory
from cxr_det.serve.schemas import ErrorResponse, Health, ModelInfo, Prediction

__all__ = ["STATIC_DIR", "DEFAULT_SCORE_THRESHOLD", "SETTINGS_ENV", "create_app", "app_from_env"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_SCORE_THRESHOLD = 0.3  # the page's slider starts here (predict.py's --conf-threshold default)
SETTINGS_ENV = "CXR_SERVE_SETTINGS"  # JSON settings of app_from_env (tools/serve.py --workers N)
API_KEY_HEADER = "X-API-Key"
RESERVED_FIELDS = ("file", "score_threshold", "preview")
# Long side of the optional preview rendering, in pixels.
PREVIEW_MAX_SIDE = 1024

_ERRORS = {400: {"model": ErrorResponse, "description": "unreadable upload or bad form field"},
           401: {"model": ErrorResponse, "description": f"missing or wrong {API_KEY_HEADER} (when the server has a key)"},
           413: {"model": ErrorResponse, "description": "request over the upload limit"},
           422: {"model": ErrorResponse, "description": "malformed form (e.g. 'file' sent as text)"}}


def _min_score(cfg) -> float:
    head = cfg.MODEL.RETINANET if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE else cfg.MODEL.ROI_HEADS
    return float(head.SCORE_THRESH_TEST)


def _score_threshold(text: Optional[str], min_score: float):
    """``(threshold, warnings)`` from the form's text; blank = ``min_score``. 400 for text
    that is not a number in 0..1."""
    if text is None or not str(text).strip():
        return min_score, []
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also NaN
        raise HTTPException(400, f"score_threshold {text!r} is not a number in 0..1")
    if value < min_score:
        return value, [f"score_threshold {value:g} is below the lowest score the model returns ({min_score:g}); "
                       f"boxes scoring under {min_score:g} are not available"]
    return value, []


class _Service:
    """The loaded model and what the routes need of it (built once per process)."""

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.cfg.freeze()
        self.predictor = CXRPredictor(self.cfg)
        self.featurizer = self.predictor.clinical_featurizer
        self.class_names = class_names_of(self.cfg)
        self.read_options = read_options_from_config(self.cfg)
        self.min_score = _min_score(self.cfg)
        self.from_dicom = self.featurizer is not None and self.cfg.CXR.CLINICAL.SOURCE == "dicom"
        masks = bool(self.cfg.MODEL.MASK_ON)
        reflacx = any(str(name).startswith("reflacx") for name in self.cfg.DATASETS.TRAIN)
        self.info = ModelInfo(task="detection", class_names=self.class_names, masks=masks,
                              ellipses=masks and reflacx, score_threshold=DEFAULT_SCORE_THRESHOLD,
                              min_score=self.min_score,
                              clinical_features=clinical_io.describe_features(self.featurizer))
        self._lock = threading.Lock()

    def features(self):
        if self.featurizer is None:
            return []
        return list(self.featurizer.numeric) + list(self.featurizer.categorical)

    def predict(self, data: bytes, name: str, fields: dict, threshold_text: Optional[str],
                preview: bool = False) -> dict:
        """One upload (its bytes and file name) and its other form fields -> the response dict:
        :meth:`prepare` then :meth:`infer`, on the calling thread.

        ``preview``: also return the image as the model read it (8-bit, display-windowed,
        long side at most :data:`PREVIEW_MAX_SIDE`) as a PNG data URL, for a client that cannot
        decode the upload itself (DICOM, 16-bit PNG/TIFF). Only on request: by default no
        pixel data goes back.
        """
        return self.infer(self.prepare(data, name, fields, threshold_text), name, preview)

    def prepare(self, data: bytes, name: str, fields: dict, threshold_text: Optional[str]):
        """Decode the upload and clean its clinical fields (any thread): ``(pixels, record,
        threshold, warnings)`` for :meth:`infer`.

        Raises HTTPException 400 naming the file when it cannot be read as an image, or the
        field when ``score_threshold`` is not a number in 0..1.
        """
        threshold, warnings = _score_threshold(threshold_text, self.min_score)
        if not data:
            raise HTTPException(400, f"{name}: empty file; upload a PNG, JPEG, TIFF or DICOM X-ray")
        notes = []
        try:
            pixels = read_image(data, self.cfg.INPUT.FORMAT, notes=notes, name=name, **self.read_options)
        except Exception as e:  # noqa: BLE001 - anything the decoders raise on a user's file is a 400
            message = str(e) if str(e).startswith(name) else f"{name}: {e}"
            raise HTTPException(400, f"not a readable image: {message} (accepted: PNG, JPEG, 16-bit PNG, TIFF, "
                                     "DICOM)") from e
        warnings += [note.message for note in notes]

        record, text_fields, field_warnings = clinical_io.form_record(fields, self.featurizer)
        warnings += field_warnings
        if self.featurizer is not None:
            if self.from_dicom and is_dicom(data, name):
                try:
                    header = clinical_io.dicom_header_values(data, name)
                except Exception as e:  # noqa: BLE001 - the pixels were readable; the header is a bonus
                    header = None
                    warnings.append(f"{name}: PatientAge / PatientSex could not be read ({type(e).__name__})")
                record, filled = clinical_io.fill_from_header(record, header, self.featurizer)
                if filled:
                    warnings.append(f"{', '.join(filled)} taken from the DICOM header (PatientAge / PatientSex): "
                                    "not given in the form")
            warnings += clinical_io.clinical_warnings(record, text_fields, self.featurizer)

        return pixels, record, threshold, warnings

    def infer(self, prepared, name: str, preview: bool = False) -> dict:
        """The model on what :meth:`prepare` returned -> the response dict.

        Called on the event loop's thread (the process's main thread under uvicorn): torch's
        intra-op threads use every core from there, but only about one from a thread-pool
        thread (measured by tools/benchmark_serve.py: overhead 1.34 -> see README). The model
        runs one image at a time per worker anyway; ``--workers`` adds parallel models.
        """
        pixels, record, threshold, warnings = prepared
        with self._lock:
            output = self.predictor(pixels, record)
        instances = output["instances"].to("cpu")
        if instances.has("pred_masks"):
            instances.remove("pred_masks")  # not part of the response; skip their encoding
        height, width = pixels.shape[:2]
        result = prediction_record(name, instances, self.class_names, height, width)
        detections = sorted(
            ({"bbox": d["bbox"], "category": d["class"], "category_id": d["category_id"], "score": d["score"]}
             for d in result["instances"] if d["score"] >= threshold),
            key=lambda d: -d["score"])
        response = {"image": {"width": int(width), "height": int(height)}, "detections": detections,
                    "image_scores": result["image_scores"],
                    "clinical_used": clinical_io.clinical_used(record, self.featurizer), "warnings": warnings}
        if preview:
            response["preview"] = _preview_data_url(pixels)
        return response


def _preview_data_url(pixels) -> str:
    """``data:image/png;base64,...`` (8-bit grayscale) of an HxWxC uint8 image in ``image_format``,
    shrunk so its long side is at most :data:`PREVIEW_MAX_SIDE` (never enlarged). The reader
    gives grayscale X-rays in every format (channels equal), so the first channel is the image."""
    image = pixels[:, :, 0]
    scale = min(1.0, PREVIEW_MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise HTTPException(500, "the preview could not be encoded")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def _validation_error(request: Request, exc: RequestValidationError):
    """FastAPI's request validation errors as one readable ``{"detail": str}`` (422), like the others."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(problems) or "malformed request"}, status_code=422)


def _api_key_dependency(api_key: Optional[str]):
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="the key the server was started with (--api-key)")

    def require_key(given: Optional[str] = Depends(header)):
        if not given or not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header: this server needs its API key",
                                headers={"WWW-Authenticate": API_KEY_HEADER})

    return require_key


def _predict_endpoint(service: _Service):
    """``POST /api/predict`` with one typed, optional text form field per clinical feature
    (so that the OpenAPI schema lists them); the form is read again for unknown fields."""

    async def predict(request: Request, **_declared):
        form = await request.form()
        upload = form.getlist("file")
        if not upload:
            raise HTTPException(400, "no file: send the X-ray as the multipart form field 'file'")
        if len(upload) > 1 or not hasattr(upload[0], "read"):
            raise HTTPException(400, "form field 'file' must be exactly one uploaded file (PNG, JPEG, TIFF, DICOM)")
        upload = upload[0]
        name = PurePath(upload.filename or "upload").name or "upload"
        data = await upload.read()
        thresholds = form.getlist("score_threshold")
        preview = str(form.get("preview") or "").strip().lower() in ("1", "true", "yes", "on")
        fields = {}
        for key in dict.fromkeys(k for k, _ in form.multi_items()):
            if key not in RESERVED_FIELDS:
                values = form.getlist(key)
                fields[key] = values[0] if len(values) == 1 else values
        prepared = await run_in_threadpool(service.prepare, data, name, fields,
                                           thresholds[-1] if thresholds else None)
        return service.infer(prepared, name, preview)

    features = {f["name"]: f for f in service.info.model_dump()["clinical_features"]}
    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter("file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[UploadFile],
                          default=File(None, description="the X-ray: PNG, JPEG, 16-bit PNG, TIFF or DICOM")),
        inspect.Parameter("score_threshold", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=Form(None, description="keep detections scoring at least this (0..1); "
                                                         "default: min_score")),
        inspect.Parameter("preview", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[bool],
                          default=Form(None, description="true: also return the image as the model read it "
                                                         "(PNG data URL, long side <= 1024), for clients that "
                                                         "cannot decode DICOM or 16-bit files; off by default")),
    ]
    for i, (name, feature) in enumerate(features.items()):
        if feature["kind"] == "number":
            bounds = f"plausible {feature['min']:g}..{feature['max']:g}; " if feature["min"] is not None else ""
            about = f"{feature['unit']}; {bounds}blank = unknown (training mean)"
        else:
            about = f"one of {', '.join(feature['values'] or [])}; blank = unknown"
        params.append(inspect.Parameter(f"clinical_{i}", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                        default=Form(None, alias=name, description=about)))
    predict.__signature__ = inspect.Signature(params)
    return predict


def create_app(cfg, *, max_upload_mb: float = 64, api_key: Optional[str] = None) -> FastAPI:
    """The service for the trained model ``cfg`` describes (from
    :func:`cxr_det.engine.run_config.inference_config`, ``MODEL.WEIGHTS`` set).

    The model (strict weights) and its clinical statistics load here, once
    (:class:`cxr_det.engine.predictor.CXRPredictor`). ``max_upload_mb``: largest request
    body in MiB (413 above it). ``api_key``: when given, every ``/api/*`` route except
    ``/api/health`` needs the header ``X-API-Key: <api_key>`` (401 otherwise).

    Raises:
        ValueError: ``MODEL.WEIGHTS`` empty or ``max_upload_mb`` not positive;
        CheckpointMismatchError: the checkpoint does not fit the model; FileNotFoundError:
        a clinical model without its statistics.
    """
    if not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb!r}")
    max_bytes = int(float(max_upload_mb) * 2**20)
    service = _Service(cfg)
    keep_uploads_in_memory(max_bytes)
    app = FastAPI(title="cxr_det inference", version=cxr_det.__version__,
                  description="Chest X-ray findings of one trained cxr_det run: upload an image, get the boxes.")
    app.state.service = service
    app.add_exception_handler(RequestValidationError, _validation_error)
    guarded = [Depends(_api_key_dependency(api_key))] if api_key else []

    @app.get("/api/health", response_model=Health, tags=["service"])
    def health():
        """Liveness: ``{"status": "ok"}``."""
        return Health()

    @app.get("/api/model", response_model=ModelInfo, dependencies=guarded, responses={401: _ERRORS[401]},
             tags=["model"])
    def model_info():
        """Classes, masks/ellipses, score defaults and the clinical fields (units, plausible ranges)."""
        return service.info

    app.post("/api/predict", response_model=Prediction, response_model_exclude_unset=True, dependencies=guarded,
             responses=_ERRORS, tags=["model"], summary="Detect findings on one X-ray")(_predict_endpoint(service))

    @app.get("/", include_in_schema=False)
    def page():
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise HTTPException(404, f"the page is not installed ({index} is missing); the API is at /api")
        return FileResponse(index)

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    logger.info(f"serving {len(service.class_names)} classes, clinical features: {service.features() or 'none'}; "
                f"upload limit {max_upload_mb:g} MiB; API key {'required' if api_key else 'not required'}")
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers (``tools/serve.py --workers N``): each worker builds
    its own model from the JSON settings in ``$CXR_SERVE_SETTINGS``: ``run``,
    ``config_file``, ``opts`` (as for :func:`cxr_det.engine.run_config.inference_config`),
    ``max_upload_mb``, ``api_key``.

    Raises:
        RuntimeError: the variable is not set; RunConfigError: as ``inference_config``.
    """
    from cxr_det.engine.run_config import inference_config

    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the service with tools/serve.py")
    settings = json.loads(text)
    cfg = inference_config(settings.get("run", ""), settings.get("config_file", ""), settings.get("opts", ()))
    return create_app(cfg, max_upload_mb=settings.get("max_upload_mb", 64), api_key=settings.get("api_key") or None)
