"""CheXpert v1.0: multi-label classification dataset dicts from ``train.csv`` / ``valid.csv``.

Layout, columns and values are in :mod:`cxr_det.formats.chexpert_format` (Irvin et al., AAAI
2019; Stanford ML Group CheXpert page, v1.0). The label policy (label sets, uncertain cells,
blanks) is :mod:`.observation_labels`, shared with MIMIC-CXR-JPG.

Records (one per image)::

    file_name        <root>/chexpert/<Path>
    image_id         int, position in the output
    dataset          "chexpert"
    split            "train" | "val" | "valid"
    patient_id       "patient00001"; study_id int (the M of studyM); view "frontal" | "lateral"
    ap_pa            "AP" | "PA" | "LL" | "RL" | None
    path             the CSV's Path
    clinical         {"age": float | None, "sex": "Male" | "Female" | None}
    labels           list of C floats 0.0/1.0; label_weights: list of C floats 0.0/1.0

No ``height``/``width``: reading 224k JPEG headers would take minutes; the mapper reads the image.
"""
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog, dataset_root, read_csv
from cxr_det.data.datasets.observation_labels import (
    observation_arrays,
    resolve_label_set,
    resolve_uncertainty,
    warn_prevalence_gaps,
)
from cxr_det.formats import normalise_split
from cxr_det.formats.chexpert_format import (
    CHEXPERT_AGE_MISSING,
    CHEXPERT_DIR,
    CHEXPERT_FOLDERS,
    CHEXPERT_FRONTAL,
    CHEXPERT_LATERAL,
    CHEXPERT_META_COLUMNS,
    CHEXPERT_PATH_PATTERN,
    CHEXPERT_SEX_VALUES,
    CHEXPERT_TRAIN_CSV,
    CHEXPERT_VALID_CSV,
    CHEXPERT_VIEWS,
)

__all__ = [
    "TABLE_ROW",
    "CHEXPERT_SPLITS",
    "chexpert_dir",
    "is_val_patient",
    "view_mask",
    "first_studies_mask",
    "load_chexpert",
    "register_chexpert",
]

logger = logging.getLogger(__name__)

# The kind of input row in the conversion ledger (SkipLog.read/account/skip(unit=...)).
TABLE_ROW = "table row (image)"
# train / val: the patient-level split of train.csv; valid: the official valid.csv; all: every row.
CHEXPERT_SPLITS = ("train", "val", "valid", "all")
_OPTIONS = ("labels", "uncertainty", "views", "max_studies_per_patient", "val_fraction", "seed", "check_files")
_DEFAULTS = {
    "labels": "competition5",
    "uncertainty": "zeros",
    "views": "frontal",
    "max_studies_per_patient": None,
    "val_fraction": 0.1,
    "seed": 0,
    "check_files": True,
}


def resolve_chexpert_split(split):
    """``train``/``val``/``valid``/``all``. ``valid`` is the official valid.csv (not an
    alias of ``val`` as elsewhere); ``validate``/``validation`` mean ``val``. ValueError
    otherwise (``test``: the CheXpert test set is not shipped)."""
    s = str(split).strip().lower()
    if s == "valid":
        return "valid"
    if s == "test":
        raise ValueError("CheXpert: no 'test' split (the test set is not public); use 'valid' for valid.csv")
    return normalise_split(s, "CheXpert")


def chexpert_dir(root=None) -> Path:
    """The release folder: ``<root>/chexpert/CheXpert-v1.0-small`` or ``.../CheXpert-v1.0``
    (the first of :data:`CHEXPERT_FOLDERS` holding a ``train.csv`` or ``valid.csv``).

    Raises DatasetFormatError naming both folders looked for."""
    base = dataset_root(root) / CHEXPERT_DIR
    found = [base / f for f in CHEXPERT_FOLDERS if (base / f / CHEXPERT_TRAIN_CSV).is_file() or (base / f / CHEXPERT_VALID_CSV).is_file()]
    if not found:
        looked = ", ".join(str(base / f) for f in CHEXPERT_FOLDERS)
        raise DatasetFormatError(f"CheXpert: no release folder with {CHEXPERT_TRAIN_CSV}/{CHEXPERT_VALID_CSV} (looked in {looked})")
    if len(found) > 1:
        logger.info("CheXpert: both %s and %s exist; reading %s", found[0].name, found[1].name, found[0].name)
    return found[0]


def is_val_patient(patient_ids, val_fraction, seed=0):
    """Boolean array: which patients go to ``val``. Deterministic, independent of row order:
    md5 of ``"<seed>/<patient id>"`` as an integer, modulo 10,000, below ``val_fraction * 10,000``
    (as VinDr's ``is_val_image``, by patient so no patient is on both sides)."""
    ids = pd.Series(patient_ids, dtype="string")
    unique = ids.unique()
    bucket = {p: int(hashlib.md5(f"{seed}/{p}".encode("utf-8")).hexdigest(), 16) % 10_000 for p in unique}
    return ids.map(bucket).to_numpy(dtype=np.int64) < float(val_fraction) * 10_000


def view_mask(frontal_lateral, ap_pa, views):
    """Boolean array selecting the rows of a view filter of :data:`CHEXPERT_VIEWS`."""
    if views not in CHEXPERT_VIEWS:
        raise ValueError(f"CheXpert: unknown views {views!r}; valid: {list(CHEXPERT_VIEWS)}")
    fl = pd.Series(frontal_lateral, dtype="string").str.strip()
    appa = pd.Series(ap_pa, dtype="string").str.strip()
    if views == "all":
        return np.ones(len(fl), dtype=bool)
    if views == "lateral":
        return (fl == CHEXPERT_LATERAL).fillna(False).to_numpy(dtype=bool)
    frontal = (fl == CHEXPERT_FRONTAL).fillna(False).to_numpy(dtype=bool)
    if views == "frontal":
        return frontal
    return frontal & (appa == views.upper()).fillna(False).to_numpy(dtype=bool)


def first_studies_mask(patients, studies, n, order=None):
    """Boolean array: rows whose study is among its patient's first ``n`` distinct studies.

    Studies are ordered by ``order`` (a list of arrays compared in turn, e.g. date then time;
    default the study itself, CheXpert's study number); a study's place is that of its
    earliest row. ``n`` None keeps every row. Vectorised (one sort of the rows).
    """
    if n is None:
        return np.ones(len(patients), dtype=bool)
    if int(n) < 1:
        raise ValueError(f"max_studies_per_patient must be >= 1 or None, got {n!r}")
    frame = pd.DataFrame({"patient": np.asarray(patients), "study": np.asarray(studies)})
    keys = []
    for i, key in enumerate(order if order is not None else [frame["study"].to_numpy()]):
        frame[f"k{i}"] = np.asarray(key)
        keys.append(f"k{i}")
    firsts = frame.sort_values(["patient"] + keys + ["study"], kind="stable").drop_duplicates(["patient", "study"])
    firsts = firsts.assign(rank=firsts.groupby("patient", sort=False).cumcount() + 1)[["patient", "study", "rank"]]
    rank = frame[["patient", "study"]].merge(firsts, on=["patient", "study"], how="left")["rank"]
    return (rank <= int(n)).to_numpy(dtype=bool)


def _clinical(frame, source):
    """(ages, sexes): lists of float|None and str|None. Age 0, blank or unparseable -> None;
    Sex Unknown or blank -> None; unparseable ages and unknown Sex values are counted in a warning."""
    raw_age = frame["Age"]
    age = pd.to_numeric(raw_age, errors="coerce")
    bad_age = age.isna() & raw_age.notna() & (raw_age.astype("string").str.strip() != "")
    bad_age |= age < 0
    age = age.where(~bad_age & (age != CHEXPERT_AGE_MISSING))
    sex = frame["Sex"].astype("string").str.strip()
    odd_sex = sex.notna() & ~sex.isin(CHEXPERT_SEX_VALUES)
    sex = sex.where(sex.isin(("Male", "Female")))
    if bad_age.any() or odd_sex.any():
        logger.warning(
            "%s: %d Age cell(s) not a non-negative number and %d Sex cell(s) not in %s read as missing",
            source, int(bad_age.sum()), int(odd_sex.sum()), list(CHEXPERT_SEX_VALUES),
        )
    ages = [None if pd.isna(a) else float(a) for a in age.to_numpy(dtype=object)]
    sexes = [None if pd.isna(s) else str(s) for s in sex.to_numpy(dtype=object)]
    return ages, sexes


# Study numbers above this are not CheXpert's (a few dozen per patient); they would not fit int64.
_MAX_STUDY = 10**9


def _read_table(path, names, uncertainty, skips):
    """One CheXpert table as (frame of kept rows with parsed Path parts, targets, weights).

    Every row is declared in the ledger of ``skips`` (a :data:`TABLE_ROW`); a row whose
    ``Path`` is not in the CheXpert layout is a counted skip. The parsed parts are the
    columns ``patient``, ``study`` (int) and ``orientation`` (replacing any such columns of
    the file, which CheXpert does not have).
    """
    frame = read_csv(path, required_columns=CHEXPERT_META_COLUMNS, dtype={"Path": str, "Sex": str, "Frontal/Lateral": str, "AP/PA": str})
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing label column(s) {missing}; columns present: {list(frame.columns)}")
    skips.read(TABLE_ROW, len(frame))
    lines = np.arange(len(frame)) + 2
    targets, weights = observation_arrays(frame, names, uncertainty, source=str(path), line_numbers=lines)
    parts = frame["Path"].astype("string").str.strip().str.extract(CHEXPERT_PATH_PATTERN)
    # \d also matches non-ASCII digits; a study number is read only when it is ASCII and sane.
    study = pd.to_numeric(parts["study"].where(parts["study"].str.isascii().fillna(False)), errors="coerce")
    ok = (parts["patient"].notna() & study.notna() & (study <= _MAX_STUDY)).to_numpy(dtype=bool)
    for i in np.flatnonzero(~ok):
        skips.skip("Path not in the CheXpert layout", f"{path.name} line {lines[i]}: {frame['Path'].iloc[i]!r}", unit=TABLE_ROW)
    frame = frame.drop(columns=["patient", "study", "orientation"], errors="ignore")
    frame = frame.assign(patient=parts["patient"], study=study.fillna(0).astype(np.int64), orientation=parts["orientation"])
    return frame[ok].reset_index(drop=True), targets[ok], weights[ok]


def load_chexpert(
    root=None,
    split="train",
    *,
    labels="competition5",
    uncertainty="zeros",
    views="frontal",
    max_studies_per_patient=None,
    val_fraction=0.1,
    seed=0,
    check_files=True,
    skip_log=None,
):
    """CheXpert dataset dicts (layout in the module docstring).

    Args:
        root: dataset root (``$CXR_DATASETS`` or ``./datasets`` if None); the release folder
            is detected by :func:`chexpert_dir`.
        split: ``train``/``val`` (patient-level split of train.csv, :func:`is_val_patient`),
            ``valid`` (the official valid.csv), ``all`` (all three).
        labels: label set (see :func:`~.observation_labels.resolve_label_set`).
        uncertainty: policy name or ``{label: policy}`` (``zeros``/``ones``/``ignore``).
        views: ``frontal`` (Frontal/Lateral = Frontal), ``ap``/``pa`` (frontal with that
            AP/PA), ``lateral``, ``all``.
        max_studies_per_patient: keep each patient's first N studies (by study number, among
            the images the view filter keeps); None keeps all.
        val_fraction: fraction in [0, 1] of train.csv's patients that form ``val``.
        seed: salt of the patient hash (another seed, another split).
        check_files: count rows whose image file is missing as skips (one stat per row).
        skip_log: a :class:`SkipLog` to add skips to (default: a new one, reported once); its
            ledger gets the outcome of every table row (:data:`TABLE_ROW`: image in the output,
            view not selected, study beyond ``max_studies_per_patient``, another split, or a
            skip).

    Raises:
        DatasetFormatError: no release folder, a table or column missing, a label cell not
            1/0/-1/blank (file, line, column named), or no image of the split found.
        ValueError: unknown split, label, policy or view; val_fraction outside [0, 1].
    """
    split = resolve_chexpert_split(split)
    names = resolve_label_set(labels)
    policy = resolve_uncertainty(uncertainty, names)
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise ValueError(f"CheXpert: val_fraction must be in [0, 1], got {val_fraction!r}")
    if views not in CHEXPERT_VIEWS:
        raise ValueError(f"CheXpert: unknown views {views!r}; valid: {list(CHEXPERT_VIEWS)}")
    folder = chexpert_dir(root)
    skips = skip_log if skip_log is not None else SkipLog("CheXpert")

    parts = []
    if split in ("train", "val", "all"):
        frame, targets, weights = _read_table(folder / CHEXPERT_TRAIN_CSV, names, policy, skips)
        val = is_val_patient(frame["patient"], val_fraction, seed)
        side = np.where(val, "val", "train")
        keep = _selected(frame, views, max_studies_per_patient, skips)
        t_mask, v_mask = keep & ~val, keep & val
        warn_prevalence_gaps(f"CheXpert ({folder.name}, views {views})", (targets[t_mask], weights[t_mask]), (targets[v_mask], weights[v_mask]), names)
        wanted = keep if split == "all" else keep & (side == split)
        skips.account(TABLE_ROW, "image of another split", int((keep & ~wanted).sum()))
        parts.append((frame[wanted], targets[wanted], weights[wanted], side[wanted], folder / CHEXPERT_TRAIN_CSV))
    if split in ("valid", "all"):
        frame, targets, weights = _read_table(folder / CHEXPERT_VALID_CSV, names, policy, skips)
        keep = _selected(frame, views, max_studies_per_patient, skips)
        parts.append((frame[keep], targets[keep], weights[keep], np.full(int(keep.sum()), "valid"), folder / CHEXPERT_VALID_CSV))

    records = []
    base = folder.parent
    for frame, targets, weights, sides, source in parts:
        files = [os.path.join(base, p) for p in frame["Path"].astype(str).str.strip()]
        exists = np.array([os.path.isfile(f) for f in files], dtype=bool) if check_files else np.ones(len(files), dtype=bool)
        if check_files and len(files) and not exists.any():
            raise DatasetFormatError(f"{source}: none of the {len(files)} selected images exists under {base} (e.g. {files[0]})")
        for f in np.asarray(files, dtype=object)[~exists]:
            skips.skip("image file missing", f, unit=TABLE_ROW)
        skips.account(TABLE_ROW, "image in the output", int(exists.sum()))
        ages, sexes = _clinical(frame, source)
        appa = frame["AP/PA"].astype("string").str.strip()
        appa = [None if pd.isna(v) or v == "" else str(v) for v in appa.to_numpy(dtype=object)]
        cols = zip(files, exists, sides, frame["patient"], frame["study"].astype(int), frame["orientation"], appa,
                   frame["Path"], ages, sexes, targets.tolist(), weights.tolist())
        for f, ok, side, patient, study, orient, ap, path, age, sex, t, w in cols:
            if not ok:
                continue
            records.append({
                "file_name": f, "image_id": len(records), "dataset": "chexpert", "split": str(side),
                "patient_id": str(patient), "study_id": int(study), "view": str(orient), "ap_pa": ap,
                "path": str(path), "clinical": {"age": age, "sex": sex}, "labels": t, "label_weights": w,
            })
    skips.report(logger)
    logger.info("CheXpert (%s, split %s, views %s): %d images, labels %s", folder.name, split, views, len(records), names)
    return records


def _selected(frame, views, max_studies_per_patient, skips):
    """Rows the view filter and ``max_studies_per_patient`` keep (boolean array); the others
    are accounted for in the ledger of ``skips``."""
    view = view_mask(frame["Frontal/Lateral"], frame["AP/PA"], views)
    keep = view & _first_studies_of(frame, view, max_studies_per_patient)
    skips.account(TABLE_ROW, f"view not selected (views={views!r})", int((~view).sum()))
    skips.account(TABLE_ROW, "study beyond max_studies_per_patient", int((view & ~keep).sum()))
    return keep


def _first_studies_of(frame, keep, n):
    """:func:`first_studies_mask` computed among the rows ``keep`` selects (False elsewhere)."""
    out = np.zeros(len(frame), dtype=bool)
    if n is None:
        out[:] = True
        return out
    sub = frame[keep]
    out[np.flatnonzero(keep)] = first_studies_mask(sub["patient"].to_numpy(), sub["study"].astype(int).to_numpy(), n)
    return out


def register_chexpert(name, root=None, split="train", **options):
    """Register ``load_chexpert(root, split, **options)`` as ``name`` in detectron2's catalogs.

    Options are those of :func:`load_chexpert` (``skip_log`` excepted), validated now
    (TypeError for an unknown option, ValueError for a bad value). Metadata:
    ``thing_classes`` (the label names), ``evaluator_type="cxr_classification"``,
    ``dataset="chexpert"``, ``split``, ``task="multi_label"``, and every option with its
    resolved value (``labels`` as a list, ``uncertainty`` as ``{label: policy}``).
    """
    split = resolve_chexpert_split(split)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"register_chexpert: unknown option(s) {unknown}; valid: {sorted(_OPTIONS)}")
    opts = {**_DEFAULTS, **options}
    names = resolve_label_set(opts["labels"])
    opts["labels"] = names
    opts["uncertainty"] = resolve_uncertainty(opts["uncertainty"], names)
    if opts["views"] not in CHEXPERT_VIEWS:
        raise ValueError(f"CheXpert: unknown views {opts['views']!r}; valid: {list(CHEXPERT_VIEWS)}")
    if opts["max_studies_per_patient"] is not None and int(opts["max_studies_per_patient"]) < 1:
        raise ValueError(f"max_studies_per_patient must be >= 1 or None, got {opts['max_studies_per_patient']!r}")
    if not 0.0 <= float(opts["val_fraction"]) <= 1.0:
        raise ValueError(f"CheXpert: val_fraction must be in [0, 1], got {opts['val_fraction']!r}")
    DatasetCatalog.register(name, lambda: load_chexpert(root, split, **opts))
    MetadataCatalog.get(name).set(
        thing_classes=list(names), evaluator_type="cxr_classification", dataset="chexpert",
        split=split, task="multi_label", **{k: v for k, v in opts.items() if k != "labels"},
    )
