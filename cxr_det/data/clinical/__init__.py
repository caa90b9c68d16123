"""Clinical data per image, the data side of clinical fusion.

* :mod:`.tables`: raw records (REFLACX joined to MIMIC-IV-ED/MIMIC-IV, VinDr DICOM headers,
  user CSVs) and :func:`attach_clinical`, which adds them to dataset dicts as ``"clinical"``.
* :mod:`.cleaning`: parsing of dirty values, Celsius conversion, the per-feature ranges table.
* :mod:`.features`: :class:`ClinicalFeaturizer` (cleaning, imputation, normalisation,
  vocabularies; statistics saved as JSON).
* :mod:`.config`: :func:`add_clinical_config` (``cfg.CXR.CLINICAL``).

Names are imported lazily so that ``add_clinical_config`` (called by ``import cxr_det``'s
config code) does not load pandas and pydicom.
"""
import importlib

_EXPORTS = {
    "config": ("add_clinical_config",),
    "cleaning": (
        "CELSIUS_RANGE", "DEFAULT_CATEGORICAL", "DEFAULT_NUMERIC", "FEATURE_RANGES", "clean_category",
        "clean_numeric", "parse_number",
    ),
    "features": ("ClinicalFeaturizer", "NotFittedError"),
    "tables": (
        "MATCH_KINDS", "TRIAGE_FIELDS", "attach_clinical", "load_clinical_csv", "load_clinical_table",
        "load_reflacx_clinical", "load_vindr_clinical", "vindr_clinical_from_dicom",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
