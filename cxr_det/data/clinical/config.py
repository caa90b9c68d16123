"""Config keys of the clinical table, under ``cfg.CXR.CLINICAL`` (see :func:`add_clinical_config`)."""
from detectron2.config import CfgNode as CN

from cxr_det.data.clinical.cleaning import DEFAULT_CATEGORICAL, DEFAULT_NUMERIC

__all__ = ["add_clinical_config"]


def add_clinical_config(cfg):
    """Add ``cfg.CXR.CLINICAL`` (called from ``add_cxr_config``); returns ``cfg``."""
    if "CXR" not in cfg:
        cfg.CXR = CN()
    _C = cfg.CXR
    _C.CLINICAL = CN()
    # Feed per-image clinical data (vitals, age, gender) to the model.
    _C.CLINICAL.ENABLED = False
    # Where the raw records come from: "mimic-iv-ed" (REFLACX joined to MIMIC-IV-ED triage and
    # MIMIC-IV patients), "dicom" (VinDr: PatientAge/PatientSex of each DICOM header), or the
    # path of a CSV with one row per image keyed by dicom_id (VinDr: image_id).
    _C.CLINICAL.SOURCE = "mimic-iv-ed"
    # Numeric features (record keys), cleaned, mean-imputed and normalised with training statistics.
    _C.CLINICAL.NUMERIC = list(DEFAULT_NUMERIC)
    # Categorical features; vocabularies learnt on the training split, index 0 = unknown.
    _C.CLINICAL.CATEGORICAL = list(DEFAULT_CATEGORICAL)
    # REFLACX: an image outside every ED stay of its patient is matched to the stay nearest in
    # time if the gap is at most this many days (integer); 0 keeps only containing stays.
    _C.CLINICAL.MATCH_WINDOW_DAYS = 7
    # Normalisation statistics and vocabularies (JSON written by training). Empty: fit them on
    # DATASETS.TRAIN and write OUTPUT_DIR/clinical_stats.json; they are also kept in checkpoints.
    _C.CLINICAL.STATS_FILE = ""
    # Embedding table size of each categorical feature (vocabulary + 1 for unknown). Filled from
    # the statistics when training starts; stored in OUTPUT_DIR/config.yaml for evaluation.
    _C.CLINICAL.CATEGORICAL_SIZES = []
    return cfg
