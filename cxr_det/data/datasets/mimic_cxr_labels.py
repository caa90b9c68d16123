"""MIMIC-CXR-JPG image labels: multi-label classification dataset dicts.

Tables and paths are in :mod:`cxr_det.formats.mimic_cxr_format` (MIMIC-CXR-JPG v2.0.0 /
2.1.0, PhysioNet; Johnson et al., arXiv:1901.07042). The CheXpert or NegBio labeler's 14
observations are given per study (``mimic-cxr-2.0.0-{chexpert,negbio}.csv.gz``) and every
image of the study takes them; the split is ``mimic-cxr-2.0.0-split.csv.gz`` (``validate``
read as ``val``); the view is the metadata table's ``ViewPosition``. Every table may be
gzipped or not (:func:`~.common.find_table`). The label policy (label sets, uncertain
cells, blanks) is :mod:`.observation_labels`, shared with CheXpert. The clinical record
(MIMIC-IV-ED / MIMIC-IV join) is not attached here.

Records (one per image)::

    file_name      <root>/mimic-cxr-jpg/files/pNN/p<subject_id>/s<study_id>/<dicom_id>.jpg
    image_id       int, position in the output
    dataset        "mimic_cxr";  split "train" | "val" | "test"
    dicom_id       str;  subject_id, study_id: int
    view_position  str (PA, AP, LATERAL, LL, ...) or None
    labels         list of C floats 0.0/1.0;  label_weights: list of C floats 0.0/1.0
"""
import logging
import os

import numpy as np
import pandas as pd

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.chexpert import first_studies_mask
from cxr_det.data.datasets.common import DatasetFormatError, SkipLog, dataset_root, find_table, read_csv
from cxr_det.data.datasets.observation_labels import (
    observation_arrays,
    resolve_label_set,
    resolve_uncertainty,
    warn_prevalence_gaps,
)
from cxr_det.data.values import whole_numbers
from cxr_det.formats import SPLIT_ALIASES, normalise_split
from cxr_det.formats.mimic_cxr_format import (
    MIMIC_CXR_IMAGE_PATH,
    MIMIC_CXR_JPG_DIR,
    MIMIC_CXR_LABELERS,
    MIMIC_CXR_METADATA,
    MIMIC_CXR_OBSERVATIONS,
    MIMIC_CXR_SPLIT,
    MIMIC_CXR_SPLIT_COLUMNS,
    MIMIC_CXR_VIEW_FILTERS,
)

__all__ = ["load_mimic_cxr_labels", "register_mimic_cxr_labels"]

logger = logging.getLogger(__name__)

_OPTIONS = ("labeler", "labels", "uncertainty", "views", "max_studies_per_patient", "check_files")
_DEFAULTS = {
    "labeler": "chexpert",
    "labels": "competition5",
    "uncertainty": "zeros",
    "views": "frontal",
    "max_studies_per_patient": None,
    "check_files": True,
}


def _check(labeler, views):
    if labeler not in MIMIC_CXR_LABELERS:
        raise ValueError(f"MIMIC-CXR: unknown labeler {labeler!r}; valid: {list(MIMIC_CXR_LABELERS)}")
    if views not in MIMIC_CXR_VIEW_FILTERS:
        raise ValueError(f"MIMIC-CXR: unknown views {views!r}; valid: {list(MIMIC_CXR_VIEW_FILTERS)}")


def _label_table(folder, labeler, names, policy):
    """(study ids, targets, weights) of the label table, every cell checked."""
    path = find_table(folder / MIMIC_CXR_LABELERS[labeler])
    frame = read_csv(path, required_columns=("subject_id", "study_id"))
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing label column(s) {missing}; columns present: {list(frame.columns)}")
    study = whole_numbers(frame["study_id"])
    if study.isna().any():
        line = int(np.flatnonzero(study.isna().to_numpy())[0]) + 2
        raise DatasetFormatError(
            f"{path}: line {line}, column 'study_id': {frame['study_id'].iloc[line - 2]!r} is not a number (a whole one)"
        )
    dup = study.duplicated(keep=False).to_numpy()
    if dup.any():
        lines = (np.flatnonzero(dup)[:4] + 2).tolist()
        raise DatasetFormatError(f"{path}: study_id repeated on lines {lines} (one row per study expected)")
    targets, weights = observation_arrays(frame, names, policy, source=str(path))
    return path, study.astype(np.int64).to_numpy(), targets, weights


def load_mimic_cxr_labels(
    root=None,
    split="train",
    *,
    labeler="chexpert",
    labels="competition5",
    uncertainty="zeros",
    views="frontal",
    max_studies_per_patient=None,
    check_files=True,
    skip_log=None,
):
    """MIMIC-CXR-JPG image-label dataset dicts (layout in the module docstring).

    Args:
        root: dataset root (``$CXR_DATASETS`` or ``./datasets`` if None).
        split: ``train``/``val``/``test`` (the split file; ``validate`` = ``val``) or ``all``.
        labeler: ``"chexpert"`` or ``"negbio"``: which label table.
        labels, uncertainty: as for CheXpert (:mod:`.observation_labels`).
        views: ``frontal`` (ViewPosition PA or AP), ``ap``, ``pa``, ``lateral`` (LATERAL or
            LL), ``all`` (every image, blank ViewPosition included).
        max_studies_per_patient: keep each subject's first N studies by StudyDate/StudyTime
            (then study_id) among the images the view filter keeps; None keeps all.
        check_files: count images whose JPG is missing as skips.
        skip_log: a :class:`SkipLog` to add skips to.

    Counted skips: a split value other than train/validate/test, a split-table row whose
    subject_id or study_id is not a whole number, a study without a label row, an image
    missing from the metadata table (unless ``views="all"``), a missing JPG.

    Raises:
        DatasetFormatError: a table or column missing, a label cell not 1/0/-1/blank or a
            study_id that is not a whole number (file, line, column named), a study twice in
            the label table, or none of the selected
            images found.
        ValueError: unknown split, labeler, label, policy or view.
    """
    split = normalise_split(split, "MIMIC-CXR")
    _check(labeler, views)
    names = resolve_label_set(labels, MIMIC_CXR_OBSERVATIONS, "MIMIC-CXR")
    policy = resolve_uncertainty(uncertainty, names, "MIMIC-CXR")
    base = dataset_root(root)
    folder = base / MIMIC_CXR_JPG_DIR
    skips = skip_log if skip_log is not None else SkipLog("MIMIC-CXR labels")

    label_path, label_studies, targets, weights = _label_table(folder, labeler, names, policy)
    images = read_csv(folder / MIMIC_CXR_SPLIT, required_columns=MIMIC_CXR_SPLIT_COLUMNS, dtype={"dicom_id": str, "split": str})
    part = images["split"].astype("string").str.strip().str.lower()
    part = part.map(lambda s: SPLIT_ALIASES.get(s, s) if isinstance(s, str) else s)
    known = part.isin(("train", "val", "test")).to_numpy()
    for i in np.flatnonzero(~known)[:3]:
        skips.skip("split value not train/validate/test", f"line {i + 2}: {images['split'].iloc[i]!r}")
    for _ in np.flatnonzero(~known)[3:]:
        skips.skip("split value not train/validate/test")
    ids_ok = (whole_numbers(images["subject_id"]).notna() & whole_numbers(images["study_id"]).notna()).to_numpy()
    for i in np.flatnonzero(known & ~ids_ok):
        skips.skip(f"subject_id or study_id not a whole number in {MIMIC_CXR_SPLIT}", f"line {i + 2}")
    images = images.assign(part=part)[known & ids_ok].reset_index(drop=True)

    meta = read_csv(folder / MIMIC_CXR_METADATA, required_columns=("dicom_id", "ViewPosition"), dtype={"dicom_id": str, "ViewPosition": str})
    keep_cols = ["dicom_id", "ViewPosition"] + [c for c in ("StudyDate", "StudyTime") if c in meta.columns]
    images = images.merge(meta[keep_cols].drop_duplicates("dicom_id"), on="dicom_id", how="left", indicator="in_meta")
    in_meta = (images.pop("in_meta") == "both").to_numpy()
    view = images["ViewPosition"].astype("string").str.strip().str.upper()

    row_of = pd.Series(np.arange(len(label_studies)), index=label_studies)
    study = pd.to_numeric(images["study_id"], errors="coerce")
    label_row = study.map(row_of)
    has_label = label_row.notna().to_numpy()
    for i in np.flatnonzero(~has_label):
        skips.skip(f"study has no row in {label_path.name}", f"dicom_id {images['dicom_id'].iloc[i]}")
    allowed = MIMIC_CXR_VIEW_FILTERS[views]
    keep = has_label.copy()
    if allowed is not None:
        for i in np.flatnonzero(has_label & ~in_meta):
            skips.skip("image not in the metadata table (view unknown)", f"dicom_id {images['dicom_id'].iloc[i]}")
        keep &= view.isin(allowed).fillna(False).to_numpy(dtype=bool)
    order = [pd.to_numeric(images[c], errors="coerce").fillna(np.inf).to_numpy() for c in ("StudyDate", "StudyTime") if c in images.columns]
    sub = np.flatnonzero(keep)
    if max_studies_per_patient is not None:
        first = first_studies_mask(images["subject_id"].to_numpy()[sub], study.to_numpy()[sub], max_studies_per_patient,
                                   [o[sub] for o in order] + [study.to_numpy()[sub]])
        keep[sub[~first]] = False

    rows = label_row.to_numpy()
    sides = images["part"].to_numpy()
    t_mask, v_mask = keep & (sides == "train"), keep & (sides == "val")
    warn_prevalence_gaps(f"MIMIC-CXR ({labeler}, views {views})",
                         (targets[rows[t_mask].astype(int)], weights[rows[t_mask].astype(int)]),
                         (targets[rows[v_mask].astype(int)], weights[rows[v_mask].astype(int)]), names)
    if split != "all":
        keep &= sides == split
    sel = images[keep]
    rows = rows[keep].astype(int)
    subjects = whole_numbers(sel["subject_id"]).astype(np.int64).to_numpy()
    studies = whole_numbers(sel["study_id"]).astype(np.int64).to_numpy()
    files = [
        os.path.join(folder, MIMIC_CXR_IMAGE_PATH.format(subject_group=str(s)[:2], subject_id=s, study_id=t, dicom_id=d, suffix=".jpg"))
        for s, t, d in zip(subjects, studies, sel["dicom_id"])
    ]
    exists = np.array([os.path.isfile(f) for f in files], dtype=bool) if check_files else np.ones(len(files), dtype=bool)
    if check_files and files and not exists.any():
        raise DatasetFormatError(f"MIMIC-CXR: none of the {len(files)} selected images exists under {folder} (e.g. {files[0]})")
    views_out = [None if pd.isna(v) or v == "" else str(v) for v in view[keep].to_numpy(dtype=object)]
    records = []
    for f, ok, side, d, s, t, v, lt, lw in zip(files, exists, sel["part"], sel["dicom_id"], subjects, studies, views_out,
                                             targets[rows].tolist(), weights[rows].tolist()):
        if not ok:
            skips.skip("image file missing", f)
            continue
        records.append({
            "file_name": f, "image_id": len(records), "dataset": "mimic_cxr", "split": str(side),
            "dicom_id": str(d), "subject_id": int(s), "study_id": int(t), "view_position": v,
            "labels": lt, "label_weights": lw,
        })
    skips.report(logger)
    logger.info("MIMIC-CXR labels (%s, split %s, views %s): %d images, labels %s", labeler, split, views, len(records), names)
    return records


def register_mimic_cxr_labels(name, root=None, split="train", **options):
    """Register ``load_mimic_cxr_labels(root, split, **options)`` as ``name``.

    Options are those of :func:`load_mimic_cxr_labels` (``skip_log`` excepted), validated
    now (TypeError for an unknown option, ValueError for a bad value). Metadata:
    ``thing_classes`` (label names), ``evaluator_type="cxr_classification"``,
    ``dataset="mimic_cxr"``, ``split``, ``task="multi_label"`` and every option resolved.
    """
    split = normalise_split(split, "MIMIC-CXR")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"register_mimic_cxr_labels: unknown option(s) {unknown}; valid: {sorted(_OPTIONS)}")
    opts = {**_DEFAULTS, **options}
    _check(opts["labeler"], opts["views"])
    names = resolve_label_set(opts["labels"], MIMIC_CXR_OBSERVATIONS, "MIMIC-CXR")
    opts["labels"] = names
    opts["uncertainty"] = resolve_uncertainty(opts["uncertainty"], names, "MIMIC-CXR")
    if opts["max_studies_per_patient"] is not None and int(opts["max_studies_per_patient"]) < 1:
        raise ValueError(f"max_studies_per_patient must be >= 1 or None, got {opts['max_studies_per_patient']!r}")
    DatasetCatalog.register(name, lambda: load_mimic_cxr_labels(root, split, **opts))
    MetadataCatalog.get(name).set(
        thing_classes=list(names), evaluator_type="cxr_classification", dataset="mimic_cxr",
        split=split, task="multi_label", **{k: v for k, v in opts.items() if k != "labels"},
    )
