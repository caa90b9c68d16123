"""Prediction on folders of real files: inputs keyed by relative path, clinical inputs
validated against the model's features, unreadable files skipped and counted.

Used by ``tools/predict.py`` (and meant for the web service): nothing here draws or writes.

- :func:`find_inputs`: image files under ``--input`` paths, keyed by their path relative to
  the input root (CheXpert's ``patientNNNNN/study1/view1_frontal.jpg`` keeps its folders).
- :func:`load_clinical_inputs` / :func:`match_clinical`: a JSON or CSV of clinical values
  joined on that relative path, or on the bare file name when file names are unique.
- :func:`check_clinical_record`: unknown fields, missing features, unparseable or
  implausible values, unknown categories, as messages (``--strict`` makes them errors).
- :func:`describe_inputs`: the model's classes and clinical fields with units and ranges.
- :func:`prediction_record`: one image's predictions as JSON-ready data (boxes, masks as COCO
  RLE, image-level scores, the clinical values used).
"""
import difflib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from cxr_det.data.clinical.cleaning import FEATURE_DESCRIPTIONS, FEATURE_RANGES, clean_category, clean_numeric
from cxr_det.data.clinical.tables import load_clinical_csv
from cxr_det.data.image_io import is_dicom
from cxr_det.evaluation.image_level import image_scores
from cxr_det.evaluation.matching import ImageBoxes

__all__ = [
    "IMAGE_SUFFIXES",
    "InputImage",
    "ClinicalInputError",
    "find_inputs",
    "load_clinical_inputs",
    "match_clinical",
    "check_clinical_record",
    "unknown_clinical_fields",
    "output_stems",
    "dicom_clinical_record",
    "describe_inputs",
    "clinical_feature_table",
    "clinical_values_used",
    "is_blank_value",
    "prediction_record",
    "clinical_entry",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
# Columns of a clinical CSV that name the image rather than describe the patient.
KEY_COLUMNS = ("file_name", "path")


class ClinicalInputError(ValueError):
    """A clinical input file that cannot be joined to the images (format, keys, duplicates)."""


@dataclass
class InputImage:
    """One input image: ``key`` (POSIX path relative to its ``--input`` root; the bare name
    for a file given directly) and ``path`` (the file)."""

    key: str
    path: Path


def find_inputs(paths: Sequence[str]) -> List[InputImage]:
    """Image files under ``paths`` (files or folders, searched recursively), by relative key.

    Hidden files (``.DS_Store``, ``._x.png``) and other suffixes are left out.

    Raises:
        FileNotFoundError: a path does not exist, or no image is found at all.
        ValueError: two inputs get the same key (e.g. two folders both holding ``a.png``).
    """
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            for p in sorted(given.rglob("*")):
                rel = p.relative_to(given)
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(
                        part.startswith(".") for part in rel.parts):
                    found.append(InputImage(PurePosixPath(*rel.parts).as_posix(), p))
        elif given.is_file():
            found.append(InputImage(given.name, given))
        else:
            raise FileNotFoundError(f"--input {given}: no such file or folder")
    if not found:
        raise FileNotFoundError(f"--input {list(paths)}: no {'/'.join(IMAGE_SUFFIXES)} images found")
    seen = {}
    for item in found:
        if item.key in seen:
            raise ValueError(f"--input: {seen[item.key]} and {item.path} both map to output {item.key}; "
                             "give one folder that holds both")
        seen[item.key] = item.path
    return found


def load_clinical_inputs(path: str) -> Tuple[Dict[str, dict], Optional[dict]]:
    """Clinical values from ``path``: ``({key: raw record}, single record or None)``.

    - CSV: one row per image with a ``file_name`` (or ``path``) column holding the image's
      path relative to the ``--input`` folder, or its bare file name; read by
      :func:`cxr_det.data.clinical.tables.load_clinical_csv` (numbers as floats, text kept).
    - JSON: an object of records keyed the same way, or one record (a flat object) for
      a single image.

    Raises:
        ClinicalInputError: unreadable file, no key column, duplicate keys.
    """
    if path.lower().endswith((".csv", ".csv.gz")):
        try:
            header = [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
            column = next((c for c in KEY_COLUMNS if c in header), None)
            if column is None:
                raise ClinicalInputError(
                    f"--clinical {path}: needs a {' or '.join(KEY_COLUMNS)} column naming each image; columns: {header}")
            table = load_clinical_csv(path, key=column)
        except ClinicalInputError:
            raise
        except Exception as e:  # noqa: BLE001 - any reading problem, named with the file
            raise ClinicalInputError(f"--clinical {path}: {e}") from e
        return {str(PurePosixPath(k)): v for k, v in table.items()}, None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ClinicalInputError(f"--clinical {path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict):
        raise ClinicalInputError(f"--clinical {path}: expected a JSON object, got {type(data).__name__}")
    if data and all(isinstance(v, dict) for v in data.values()):
        return {str(PurePosixPath(k)): v for k, v in data.items()}, None
    return {}, data


def match_clinical(images: Sequence[InputImage], table: Dict[str, dict], single: Optional[dict] = None):
    """``({image key: raw record or None}, [unmatched table keys])``.

    A table key matches an image whose relative key equals it; a bare file name (no ``/``)
    matches the image of that name, which must then be unique among the inputs.

    Raises:
        ClinicalInputError: one record for several images; a file name shared by several inputs.
    """
    if single is not None:
        if len(images) != 1:
            raise ClinicalInputError(
                f"one clinical record given for {len(images)} images; key the records by file (CSV column file_name)")
        return {images[0].key: single}, []
    by_key = {im.key: im for im in images}
    by_name: Dict[str, List[str]] = {}
    for im in images:
        by_name.setdefault(PurePosixPath(im.key).name, []).append(im.key)
    out = {im.key: None for im in images}
    unmatched = []
    for key, record in table.items():
        if key in by_key:
            out[key] = record
        elif "/" not in key and key in by_name:
            if len(by_name[key]) > 1:
                raise ClinicalInputError(
                    f"clinical record {key!r} names a file that occurs {len(by_name[key])} times among the inputs "
                    f"({', '.join(by_name[key][:4])}); key the records by relative path")
            out[by_name[key][0]] = record
        else:
            unmatched.append(key)
    return out, unmatched


def unknown_clinical_fields(fields, featurizer) -> List[str]:
    """Messages for field names (CSV columns, JSON keys) that are not the model's features,
    each with the closest feature name when there is one (``Age`` -> ``age``)."""
    known = list(featurizer.numeric) + list(featurizer.categorical)
    problems = []
    for field in fields:
        if field in known or field in KEY_COLUMNS:
            continue
        close = difflib.get_close_matches(str(field).lower(), known, n=1, cutoff=0.5)
        problems.append(f"unknown field {field!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return problems


def check_clinical_record(record: Optional[dict], featurizer, *, fields: bool = True) -> List[str]:
    """Problems with one raw clinical record for a model's features, as readable messages.

    Unknown fields (with the closest known name; ``fields=False`` leaves them out, for a
    table whose columns were checked once by :func:`unknown_clinical_fields`), features
    absent (imputed with the training mean / unknown category), numbers that do not parse,
    values outside the plausible range (set missing), categories outside the training
    vocabulary (unknown index). ``record`` None gives one message (every feature imputed).
    """
    numeric, categorical = list(featurizer.numeric), list(featurizer.categorical)
    known = numeric + categorical
    if record is None:
        return ["no clinical record: every feature imputed"]
    problems = unknown_clinical_fields(record, featurizer) if fields else []
    absent = [f for f in known if is_blank_value(record.get(f))]
    if absent:
        problems.append(f"missing: {', '.join(absent)} (imputed)")
    for name in numeric:
        raw = record.get(name)
        if is_blank_value(raw):
            continue
        value, events = clean_numeric(name, raw, featurizer.ranges, featurizer.celsius_range)
        if "non_numeric" in events:
            problems.append(f"{name} {raw!r} is not a number (treated as missing)")
        elif "out_of_range" in events:
            low, high, _ = featurizer.ranges[name]
            problems.append(f"{name} {raw!r} is outside the plausible range {low:g}..{high:g} (treated as missing)")
    for name in categorical:
        raw = record.get(name)
        category = clean_category(name, raw)
        if category is not None and featurizer.vocab is not None and category not in featurizer.vocab[name]:
            problems.append(f"{name} {raw!r} is not among the training values {sorted(featurizer.vocab[name])} "
                            "(treated as unknown)")
    return problems


def _finite_or_none(value) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), 3)


def clinical_feature_table(featurizer) -> List[dict]:
    """The model's clinical features (``GET /api/model`` of the service, ``predict.py --describe``) (``[]`` for ``featurizer`` None).

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


def clinical_values_used(record: Optional[dict], featurizer) -> Dict[str, dict]:
    """Per feature of the model: ``{"raw", "value", "status"}``, ``value`` cleaned as the
    featurizer cleans it (None = missing, imputed) and ``status`` one of ``ok``, ``missing``,
    ``not_a_number``, ``out_of_range``, ``unknown_category``, ``converted`` (Celsius, ranges,
    "10+", case). ``{}`` for ``featurizer`` None."""
    if featurizer is None:
        return {}
    record = record or {}
    used = {}
    for name in featurizer.numeric:
        raw = record.get(name)
        if is_blank_value(raw):
            used[name] = {"raw": None, "value": None, "status": "missing"}
            continue
        value, events = clean_numeric(name, raw, featurizer.ranges, featurizer.celsius_range)
        used[name] = {"raw": raw, "value": _finite_or_none(value), "status": _numeric_status(events)}
    for name in featurizer.categorical:
        raw = record.get(name)
        category = clean_category(name, raw)
        if category is None:
            used[name] = {"raw": None if is_blank_value(raw) else raw, "value": None, "status": "missing"}
        elif featurizer.vocab is not None and category not in featurizer.vocab[name]:
            used[name] = {"raw": raw, "value": None, "status": "unknown_category"}
        else:
            status = "ok" if category == str(raw).strip() else "converted"
            used[name] = {"raw": raw, "value": category, "status": status}
    return used


def is_blank_value(value) -> bool:
    """Whether a raw clinical value is absent: None, NaN, or blank text."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def dicom_clinical_record(path) -> Optional[dict]:
    """``{"age", "gender"}`` from a DICOM header (PatientAge, PatientSex), or None for other files."""
    if not is_dicom(path):
        return None
    from cxr_det.data.clinical.tables import vindr_clinical_from_dicom

    record = vindr_clinical_from_dicom(path)
    return {"age": record["age"], "gender": record["gender"]}


def describe_inputs(class_names: Sequence[str], featurizer=None, source: str = "") -> str:
    """A plain-text description of what the model takes and gives, for ``predict.py
    --describe``: classes, and the clinical fields of :func:`clinical_feature_table`."""
    lines = [f"classes ({len(class_names)}): " + ", ".join(class_names)]
    if featurizer is None:
        lines.append("clinical data: not used (image-only model)")
        return "\n".join(lines)
    lines.append(f"clinical data (source at training: {source or 'user'}); blank or absent = unknown, imputed:")
    lines.append(f"  {'field':<12} {'type':<9} {'unit':<30} {'plausible range':<16} training mean / values")
    for f in clinical_feature_table(featurizer):
        if f["kind"] == "number":
            plaus = f"{f['min']:g}..{f['max']:g}" if f["min"] is not None else "-"
            mean = "-" if f["training_mean"] is None else f"{f['training_mean']:.1f}"
            lines.append(f"  {f['name']:<12} {'number':<9} {f['unit']:<30} {plaus:<16} {mean}")
        else:
            lines.append(f"  {f['name']:<12} {'category':<9} {f['unit']:<30} {'-':<16} values: {', '.join(f['values'])}")
    lines.append("Give them as --clinical CSV (column file_name = path relative to --input, or the file name) "
                 "or JSON; DICOM inputs also give age and gender from PatientAge / PatientSex when the model "
                 "was trained with CXR.CLINICAL.SOURCE dicom.")
    return "\n".join(lines)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def prediction_record(key: str, instances, class_names: Sequence[str], height: int, width: int,
                      clinical_raw=None, clinical_problems=(), featurizer=None) -> dict:
    """One image's predictions, ready for ``json.dump``.

    Args:
        key: the input's relative path; instances: detectron2 ``Instances`` on CPU in the
        input image's pixel frame; height, width: that frame's size.

    Returns:
        ``{"file_name", "height", "width", "instances": [{"bbox" [x0, y0, x1, y1] absolute
        pixels, "bbox_mode": "XYXY_ABS", "category_id", "class", "score", ["segmentation":
        COCO RLE]}], "image_scores": {class: highest box score, 0 without a box},
        "clinical": {"raw", "used", "problems"}}``. ``used`` holds each feature's cleaned
        value (None = missing, imputed).
    """
    boxes = instances.pred_boxes.tensor.numpy() if len(instances) else np.zeros((0, 4))
    scores = instances.scores.numpy() if len(instances) else np.zeros(0)
    classes = instances.pred_classes.numpy() if len(instances) else np.zeros(0, dtype=np.int64)
    masks = instances.pred_masks.numpy() if instances.has("pred_masks") and len(instances) else None
    detections = []
    for i in range(len(boxes)):
        det = {"bbox": [round(float(v), 2) for v in boxes[i]], "bbox_mode": "XYXY_ABS",
               "category_id": int(classes[i]), "class": class_names[int(classes[i])],
               "score": round(float(scores[i]), 4)}
        if masks is not None:
            det["segmentation"] = _rle(masks[i])
        detections.append(det)
    per_class, _ = image_scores([ImageBoxes(key, pred_boxes=boxes, pred_scores=scores, pred_classes=classes)],
                                len(class_names))
    result = {
        "file_name": key,
        "height": int(height),
        "width": int(width),
        "instances": detections,
        "image_scores": {name: round(float(per_class[0, c]), 4) for c, name in enumerate(class_names)},
    }
    if featurizer is not None:
        result["clinical"] = clinical_entry(clinical_raw, clinical_problems, featurizer)
    return result


def clinical_entry(clinical_raw, clinical_problems, featurizer) -> dict:
    """The ``"clinical"`` entry of a prediction record (detection or classification):
    ``{"raw" (blank values as None), "used" (:func:`clinical_values_used`), "problems"}``."""
    raw = None if clinical_raw is None else {k: (None if is_blank_value(v) else v) for k, v in clinical_raw.items()}
    return {"raw": raw, "used": clinical_values_used(clinical_raw, featurizer), "problems": list(clinical_problems)}


def output_stems(output_dir: str, keys: Sequence[str]) -> Dict[str, str]:
    """``{key: output_dir/<key without its suffix>}``: outputs mirror the input tree.

    Two inputs that differ only in their suffix (``a/x.jpg``, ``a/x.png``) keep it
    (``a/x.jpg``, ``a/x.png`` + ``.json``) so neither output overwrites the other. Folders
    are created.
    """
    plain = {k: PurePosixPath(k).with_suffix("").as_posix() for k in keys}
    counts: Dict[str, int] = {}
    for stem in plain.values():
        counts[stem] = counts.get(stem, 0) + 1
    out = {}
    for key in keys:
        stem = plain[key] if counts[plain[key]] == 1 else key
        path = os.path.join(output_dir, *PurePosixPath(stem).parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out[key] = path
    return out
