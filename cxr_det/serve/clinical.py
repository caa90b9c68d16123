"""Clinical form fields of ``POST /api/predict``: described, merged with a DICOM header, cleaned.

The same cleaning as training and ``tools/predict.py`` (:func:`clean_numeric`,
:func:`clean_category` with the run's ranges and vocabulary; the model itself cleans the
record again through its featurizer), reported per feature with a status.
"""
import io
import math
from pathlib import PurePath
from typing import Dict, List, Optional, Tuple

from cxr_det.data.clinical.cleaning import FEATURE_DESCRIPTIONS, FEATURE_RANGES, clean_category, clean_numeric
from cxr_det.engine.inference import check_clinical_record, dicom_clinical_record

__all__ = ["describe_features", "form_record", "dicom_header_values", "fill_from_header", "clinical_used",
           "clinical_warnings"]


def _finite_or_none(value) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 3)


def describe_features(featurizer) -> List[dict]:
    """The model's clinical features for ``GET /api/model`` (``[]`` for ``featurizer`` None).

    Numbers: ``{"name", "kind": "number", "unit", "min", "max" (plausible range; outside =
    missing), "training_mean"}``; categories: ``{"name", "kind": "category", "unit",
    "values" (the training vocabulary, sorted)}``.
    """
    if featurizer is None:
        return []
    out = []
    for i, name in enumerate(featurizer.numeric):
        bounds = featurizer.ranges.get(name) or FEATURE_RANGES.get(name)
        mean = featurizer.mean[i] if featurizer.mean is not None else None
        out.append({"name": name, "kind": "number", "unit": FEATURE_DESCRIPTIONS.get(name, ""),
                    "min": float(bounds[0]) if bounds else None, "max": float(bounds[1]) if bounds else None,
                    "values": None, "training_mean": _finite_or_none(mean)})
    for name in featurizer.categorical:
        vocab = sorted(str(v) for v in featurizer.vocab[name]) if featurizer.vocab else []
        out.append({"name": name, "kind": "category", "unit": FEATURE_DESCRIPTIONS.get(name, ""),
                    "min": None, "max": None, "values": vocab, "training_mean": None})
    return out


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def form_record(fields: Dict[str, object], featurizer) -> Tuple[Optional[dict], Dict[str, object], List[str]]:
    """Split the form's non-reserved fields: ``(record of the model's features given, every
    text field by name, warnings)``.

    ``fields``: name -> value as the multipart form gave it (text, or an upload for a field
    that should be text). Non-text values and repeated names are warned about; for an
    image-only model (``featurizer`` None) every field is ignored with a warning.
    """
    warnings, text = [], {}
    for name, value in fields.items():
        if isinstance(value, list):
            warnings.append(f"form field {name!r} given {len(value)} times; the last value is used")
            value = value[-1]
        if not isinstance(value, str):
            warnings.append(f"form field {name!r} is a file; a clinical value must be text (ignored)")
            continue
        text[name] = value
    if featurizer is None:
        if text:
            warnings.append(f"this model does not use clinical data; form field(s) {', '.join(sorted(text))} ignored")
        return None, {}, warnings
    known = set(featurizer.numeric) | set(featurizer.categorical)
    return {k: v for k, v in text.items() if k in known}, text, warnings


def dicom_header_values(data: bytes, name: str) -> Optional[dict]:
    """``{"age", "gender"}`` from the PatientAge / PatientSex of an uploaded DICOM held in
    memory (age NaN and gender None when absent), or None when it is not a DICOM. Nothing
    else of the header is read out."""
    buffer = io.BytesIO(data)
    buffer.name = PurePath(name or "upload").name  # suffix hint for is_dicom; the DICM magic also counts
    return dicom_clinical_record(buffer)


def fill_from_header(record: dict, header: Optional[dict], featurizer) -> Tuple[dict, List[str]]:
    """``record`` with the model's features that the form left blank taken from ``header``
    (:func:`dicom_header_values`), and the names so filled."""
    filled = []
    if not header:
        return record, filled
    known = set(featurizer.numeric) | set(featurizer.categorical)
    merged = dict(record)
    for name, value in header.items():
        if name in known and _blank(merged.get(name)) and not _blank(value):
            merged[name] = value
            filled.append(name)
    return merged, filled


def _numeric_status(events) -> str:
    if "non_numeric" in events:
        return "not_a_number"
    if "out_of_range" in events or "clipped" in events:
        return "out_of_range"
    if "blank" in events:
        return "missing"
    if {"celsius_to_fahrenheit", "range_mean", "lower_bound"} & set(events):
        return "converted"
    return "ok"


def clinical_used(record: Optional[dict], featurizer) -> Dict[str, dict]:
    """Per feature of the model: ``{"raw", "value", "status"}`` (see
    :class:`cxr_det.serve.schemas.ClinicalValue`); ``{}`` for ``featurizer`` None."""
    if featurizer is None:
        return {}
    record = record or {}
    used = {}
    for name in featurizer.numeric:
        raw = record.get(name)
        if _blank(raw):
            used[name] = {"raw": None, "value": None, "status": "missing"}
            continue
        value, events = clean_numeric(name, raw, featurizer.ranges, featurizer.celsius_range)
        used[name] = {"raw": raw, "value": _finite_or_none(value), "status": _numeric_status(events)}
    for name in featurizer.categorical:
        raw = record.get(name)
        category = clean_category(name, raw)
        if category is None:
            used[name] = {"raw": None if _blank(raw) else raw, "value": None, "status": "missing"}
        elif featurizer.vocab is not None and category not in featurizer.vocab[name]:
            used[name] = {"raw": raw, "value": None, "status": "unknown_category"}
        else:
            status = "ok" if category == str(raw).strip() else "converted"
            used[name] = {"raw": raw, "value": category, "status": status}
    return used


def clinical_warnings(record: dict, fields: Dict[str, object], featurizer) -> List[str]:
    """Readable problems of the clinical input, as ``tools/predict.py`` reports them
    (:func:`check_clinical_record`): unknown form fields with the closest known name,
    features missing (imputed), numbers that do not parse, implausible values, unknown
    categories."""
    unknown = {k: v for k, v in fields.items() if k not in record}
    return check_clinical_record({**unknown, **record}, featurizer)
