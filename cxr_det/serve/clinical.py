"""Clinical form fields of ``POST /api/predict``: described, merged with a DICOM header, cleaned.

The same cleaning as training and ``tools/predict.py`` (:func:`clean_numeric`,
:func:`clean_category` with the run's ranges and vocabulary; the model itself cleans the
record again through its featurizer), reported per feature with a status.
"""
import io
from pathlib import PurePath
from typing import Dict, List, Optional, Tuple

from cxr_det.engine.inference import (
    check_clinical_record,
    clinical_feature_table,
    clinical_values_used,
    dicom_clinical_record,
    is_blank_value,
)

__all__ = ["describe_features", "form_record", "dicom_header_values", "fill_from_header", "clinical_used",
           "clinical_warnings"]

# The service's names for the engine's per-feature description and report.
describe_features = clinical_feature_table
clinical_used = clinical_values_used


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
        if name in known and is_blank_value(merged.get(name)) and not is_blank_value(value):
            merged[name] = value
            filled.append(name)
    return merged, filled


def clinical_warnings(record: dict, fields: Dict[str, object], featurizer) -> List[str]:
    """Readable problems of the clinical input, as ``tools/predict.py`` reports them
    (:func:`check_clinical_record`): unknown form fields with the closest known name,
    features missing (imputed), numbers that do not parse, implausible values, unknown
    categories."""
    unknown = {k: v for k, v in fields.items() if k not in record}
    return check_clinical_record({**unknown, **record}, featurizer)
