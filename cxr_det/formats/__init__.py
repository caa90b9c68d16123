"""Schemas of the chest X-ray datasets as they ship: folder layouts, file names, columns and
label vocabularies, one module per format. Constants only (standard library imports), so
the config module, the registrars, the clinical join and the synthetic writer can all
import them without loading pandas, pydicom or the models.

* :mod:`.reflacx_format`: REFLACX (PhysioNet, v1.0.0)
* :mod:`.mimic_cxr_format`: MIMIC-CXR-JPG (v2.0.0 / 2.1.0) and MIMIC-CXR DICOM (v2.0.0)
* :mod:`.mimic_iv_ed_format`: MIMIC-IV-ED (v1.0 / 2.x) triage and MIMIC-IV patients
* :mod:`.vindr_format`: VinDr-CXR (PhysioNet v1.0.0 and the Kaggle VinBigData release)

This module holds what every format shares: the split names and reader modes (the
vocabulary of how several radiologists' marks of one image become ground truth).
"""
import logging
import warnings

__all__ = [
    "SPLITS",
    "SPLIT_ALIASES",
    "normalise_split",
    "NO_FINDING",
    "READER_MODES",
    "DEPRECATED_READER_MODES",
    "resolve_reader_mode",
]

# Splits every registered dataset has: ``<dataset>_<split>``; "all" is the union of the others.
SPLITS = ("train", "val", "test", "all")
# Other spellings found in the shipped files (MIMIC-CXR's split file says "validate").
SPLIT_ALIASES = {"validate": "val", "valid": "val", "validation": "val"}

# VinDr-CXR's label of a normal image (and the VinBigData class id 14 of an image without
# findings); REFLACX uses no such label (a normal reading simply has no ellipse).
NO_FINDING = "No finding"

# How the marks of several radiologists of one image become ground truth, named by algorithm:
#   all_readers            one record per image with every radiologist's marks (MDF-Net's
#                          REFLACX training data; VinDr-CXR's raw annotations)
#   per_reading            one record per reading (REFLACX: an image read by 3 radiologists
#                          appears 3 times)
#   mean_ellipse           one record per image; overlapping same-class ellipses of different
#                          readings merged into their mean ellipse (REFLACX)
#   weighted_boxes_fusion  one record per image; same-class boxes of different radiologists
#                          fused by weighted boxes fusion (Solovyev et al., Image and Vision
#                          Computing 2021), as in the VinBigData Kaggle solutions (VinDr-CXR)
# A radiologist's id (VinDr-CXR "R9") keeps that radiologist's marks only.
READER_MODES = ("all_readers", "per_reading", "mean_ellipse", "weighted_boxes_fusion")
# Earlier names, accepted with a DeprecationWarning: {dataset: {old: new}}.
DEPRECATED_READER_MODES = {
    "reflacx": {"pooled": "all_readers", "reading": "per_reading", "fused": "mean_ellipse"},
    "vindr": {"all": "all_readers", "fused": "weighted_boxes_fusion"},
}


def normalise_split(split, dataset="dataset"):
    """``train``/``val``/``test``/``all`` from any shipped spelling (case-insensitive,
    ``validate`` -> ``val``). Raises ValueError naming ``dataset`` for an unknown split."""
    s = str(split).strip().lower()
    s = SPLIT_ALIASES.get(s, s)
    if s not in SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; valid: {list(SPLITS)}")
    return s


def resolve_reader_mode(value, dataset, supported, reader_ids_allowed=False):
    """The reader mode ``value`` in the shared vocabulary of :data:`READER_MODES`.

    Args:
        value: a mode name, an earlier name of ``dataset`` (see
            :data:`DEPRECATED_READER_MODES`; a DeprecationWarning, also logged, names the new
            one), or, where
            ``reader_ids_allowed``, one radiologist's id (returned unchanged).
        dataset: ``"reflacx"`` or ``"vindr"``, for the deprecated names and the messages.
        supported: the modes this dataset implements (a subset of :data:`READER_MODES`).
        reader_ids_allowed: whether any other non-empty string is a radiologist's id.

    Raises:
        ValueError: an empty value, a mode of the vocabulary this dataset does not implement,
            or an unknown name (the message lists the valid ones).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{dataset}: reader mode must be a non-empty string, got {value!r}")
    mode = value.strip()
    old = DEPRECATED_READER_MODES.get(dataset, {})
    if mode in old:
        message = f"{dataset}: reader mode {mode!r} is deprecated; it is now called {old[mode]!r}"
        # DeprecationWarning for code that filters warnings; logged too, because Python hides
        # DeprecationWarnings raised inside a library from someone running a YAML config
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logging.getLogger(__name__).warning(message)
        mode = old[mode]
    if mode in supported:
        return mode
    valid = list(supported) + (["a radiologist's id, e.g. 'R9'"] if reader_ids_allowed else [])
    if mode in READER_MODES:
        raise ValueError(f"{dataset}: reader mode {mode!r} is not available for this dataset; valid: {valid}")
    if reader_ids_allowed:
        return mode
    raise ValueError(f"{dataset}: unknown reader mode {value!r}; valid: {valid}")
