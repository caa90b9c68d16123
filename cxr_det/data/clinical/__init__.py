"""Clinical data per image, the data side of clinical fusion.

* :mod:`.tables`: raw records (REFLACX and MIMIC-CXR joined to MIMIC-IV-ED/MIMIC-IV, VinDr DICOM headers,
  user CSVs) and :func:`attach_clinical`, which adds them to dataset dicts as ``"clinical"``.
* :mod:`.cleaning`: parsing of dirty values, Celsius conversion, the per-feature ranges table.
* :mod:`.features`: :class:`ClinicalFeaturizer` (cleaning, imputation, normalisation,
  vocabularies; statistics saved as JSON).
* :mod:`.pipeline`: the clinical record attached to a registered dataset, and the fitted
  featurizer of a run.

The config keys are ``cfg.CXR.CLINICAL`` (:func:`cxr_det.config.add_clinical_config`).
"""
from .cleaning import (
    CELSIUS_RANGE,
    DEFAULT_CATEGORICAL,
    DEFAULT_NUMERIC,
    FEATURE_RANGES,
    clean_category,
    clean_numeric,
    parse_number,
)
from .features import ClinicalFeaturizer, NotFittedError
from .tables import (
    MATCH_KINDS,
    TRIAGE_FIELDS,
    attach_clinical,
    load_clinical_csv,
    load_clinical_table,
    load_mimic_cxr_clinical,
    load_reflacx_clinical,
    load_vindr_clinical,
    vindr_clinical_from_dicom,
)

__all__ = [
    "CELSIUS_RANGE",
    "DEFAULT_CATEGORICAL",
    "DEFAULT_NUMERIC",
    "FEATURE_RANGES",
    "MATCH_KINDS",
    "TRIAGE_FIELDS",
    "ClinicalFeaturizer",
    "NotFittedError",
    "attach_clinical",
    "clean_category",
    "clean_numeric",
    "load_clinical_csv",
    "load_clinical_table",
    "load_mimic_cxr_clinical",
    "load_reflacx_clinical",
    "load_vindr_clinical",
    "parse_number",
    "vindr_clinical_from_dicom",
]
