"""Raw clinical records per image: MIMIC-IV-ED/MIMIC-IV for MIMIC-CXR images (REFLACX's and the
MIMIC-CXR-JPG label splits'), DICOM headers for VinDr, user CSVs.

A clinical table is ``{image key: record}`` where a record is a dict of raw values as the
files hold them (floats for numeric cells, strings for text such as ``"unable"``, NaN for
blanks); cleaning happens later in :class:`~cxr_det.data.clinical.features.ClinicalFeaturizer`.
:func:`attach_clinical` puts the records into detectron2 dataset dicts as ``record["clinical"]``.

MIMIC-CXR (and so REFLACX) has no ED stay id; following MDF-Net, each image is matched to the
MIMIC-IV-ED stay of the same ``subject_id`` whose ``intime..outtime`` contains the image acquisition time
(MIMIC-CXR-JPG ``StudyDate`` + ``StudyTime``), else to the stay nearest in time within a
window (distance = gap between the acquisition time and the stay interval), else to none.
The tables' paths and columns, with their sources (PhysioNet pages and versions), are
:mod:`cxr_det.formats.mimic_cxr_format` and :mod:`cxr_det.formats.mimic_iv_ed_format`.
"""
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    SkipLog,
    dataset_root,
    find_table,
    read_csv,
    table_exists,
)
from cxr_det.data.dicom import DicomReadError, read_dicom_header
from cxr_det.data.values import whole_numbers
from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_JPG_DIR, MIMIC_CXR_METADATA
from cxr_det.formats.mimic_iv_ed_format import EDSTAYS, PATIENTS_PATHS, TRIAGE, TRIAGE_FIELDS
from cxr_det.formats.reflacx_format import REFLACX_MAIN_DIR, REFLACX_METADATA, REFLACX_PHASES
from cxr_det.formats.vindr_format import VINDR_DICOM_SUFFIX, VINDR_DIR, VINDR_IMAGE_FOLDERS

__all__ = [
    "TRIAGE_FIELDS",
    "MATCH_KINDS",
    "load_reflacx_clinical",
    "load_mimic_cxr_clinical",
    "load_clinical_csv",
    "vindr_clinical_from_dicom",
    "load_vindr_clinical",
    "load_clinical_table",
    "attach_clinical",
]

logger = logging.getLogger(__name__)

MATCH_KINDS = ("inside", "nearest", "none")

# The tables' paths and columns are those of cxr_det.formats.mimic_cxr_format and
# .mimic_iv_ed_format; each table is looked up as shipped (gzipped) and unzipped (see
# :func:`~cxr_det.data.datasets.common.find_table`). The columns the join reads, of each:
_CXR_COLUMNS = ("dicom_id", "subject_id", "StudyDate", "StudyTime")
_EDSTAYS_COLUMNS = ("subject_id", "stay_id", "intime", "outtime")
_TRIAGE_COLUMNS = ("stay_id",) + TRIAGE_FIELDS
_PATIENTS_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year")


def _read(path, required, optional=()):
    """Only the needed columns of a (possibly large) CSV, all as text; blanks are NaN."""
    wanted = set(required) | set(optional)
    return read_csv(path, required, usecols=lambda c: c in wanted, dtype=str)


def _raw_values(series: pd.Series) -> pd.Series:
    """Numeric cells as numbers, other text kept as the stripped string, blanks NaN."""
    text = series.str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    keep_text = numbers.isna() & text.notna() & (text != "")
    return numbers.astype(object).where(~keep_text, text)


def _ids(series: pd.Series) -> pd.Series:
    """Integer ids (nullable) from text cells such as ``"10000032"`` or ``"10000032.0"``;
    NA for a blank, text, a fraction, inf, or a number too large to be an id
    (:func:`~cxr_det.data.values.whole_numbers`)."""
    return whole_numbers(series)


# StudyDate range whose times pandas' nanosecond timestamps hold (1677-09-22 .. 2262-04-11);
# MIMIC's shifted dates lie in 2100 .. 2200. Outside it a date is invalid (NaT).
_FIRST_DATE, _LAST_DATE = 16780101, 22611231


def _acquisition_times(date, time) -> pd.Series:
    """Datetimes from MIMIC-CXR ``StudyDate`` (YYYYMMDD) and ``StudyTime`` (HHMMSS.fff).

    ``StudyTime`` loses its leading zeros as a float (``52312.5`` is 05:23:12.5). Invalid
    or missing parts give NaT.
    """
    date = _ids(date)
    date = date.where(((date >= _FIRST_DATE) & (date <= _LAST_DATE)).fillna(False))
    days = pd.to_datetime(date.astype(str), format="%Y%m%d", errors="coerce")
    t = pd.to_numeric(time, errors="coerce")
    hours, minutes, seconds = t // 10000, (t // 100) % 100, t % 100
    valid = (t >= 0) & (hours < 24) & (minutes < 60) & (seconds < 60)
    offset = pd.to_timedelta((hours * 3600 + minutes * 60 + seconds).where(valid), unit="s")
    return days + offset


def _reflacx_dicom_ids(root: Path):
    """dicom_ids of every REFLACX phase present (metadata_phase_{1,2,3}.csv)."""
    ids, found = [], []
    for phase in REFLACX_PHASES:
        path = root / REFLACX_MAIN_DIR / REFLACX_METADATA.format(phase=phase)
        if table_exists(path):
            found.append(path)
            ids.extend(_read(path, ("dicom_id",))["dicom_id"].dropna().str.strip())
    if not found:
        phases = "{" + ",".join(str(p) for p in REFLACX_PHASES) + "}"
        pattern = root / REFLACX_MAIN_DIR / REFLACX_METADATA.format(phase=phases)
        raise DatasetFormatError(f"{pattern}: file not found (no REFLACX phase)")
    return list(dict.fromkeys(i for i in ids if i))


def _match_stays(images: pd.DataFrame, stays: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """One row per image with the chosen ``stay_id``, ``match`` and ``gap`` (NaN when none).

    Vectorised: images are paired with their subject's stays by a merge on ``subject_id``
    (a few stays per subject), the gap to each stay interval is computed, and the best
    candidate per image is kept: a containing stay first (the latest arrival if several),
    then the smallest gap within ``window``.
    """
    pairs = images[["dicom_id", "subject_id", "time"]].merge(stays, on="subject_id", how="inner")
    before = (pairs["intime"] - pairs["time"]).dt.total_seconds()
    after = (pairs["time"] - pairs["outtime"]).dt.total_seconds()
    pairs["gap"] = np.maximum(np.maximum(before, after), 0.0)
    pairs = pairs[pairs["gap"].notna() & (pairs["gap"] <= window.total_seconds())]
    pairs = pairs.sort_values(["dicom_id", "gap", "intime", "stay_id"], ascending=[True, True, False, True])
    best = pairs.drop_duplicates("dicom_id")[["dicom_id", "stay_id", "gap", "stay_gender"]]
    out = images.merge(best, on="dicom_id", how="left")
    out["match"] = np.where(out["gap"].isna(), "none", np.where(out["gap"] == 0, "inside", "nearest"))
    return out


def _stay_times(text: pd.Series) -> pd.Series:
    """ISO 8601 times of an ED stay; NaT when invalid or outside the nanosecond timestamp
    range (1677-09-22 .. 2262-04-11) that the acquisition times are computed in."""
    times = pd.to_datetime(text, errors="coerce", format="ISO8601")
    return times.where((times >= pd.Timestamp.min) & (times <= pd.Timestamp.max))


def _clean_stays(stays: pd.DataFrame, path: Path, skips: SkipLog) -> pd.DataFrame:
    """ED stays with integer ids and times; a stay without valid ids or intime is a counted
    skip, one without a valid outtime (or leaving before it arrived) lasts an instant."""
    stays = stays.copy()
    stays["subject_id"], stays["stay_id"] = _ids(stays["subject_id"]), _ids(stays["stay_id"])
    stays["intime"] = _stay_times(stays["intime"])
    stays["outtime"] = _stay_times(stays["outtime"])
    bad = stays["subject_id"].isna() | stays["stay_id"].isna() | stays["intime"].isna()
    for stay in stays.loc[bad, "stay_id"]:
        skips.skip("ED stay without a valid subject_id/stay_id/intime (ignored)", f"stay_id {stay}")
    stays = stays[~bad]
    point = stays["outtime"].isna() | (stays["outtime"] < stays["intime"])
    for stay in stays.loc[point, "stay_id"]:
        skips.skip("ED stay without a valid outtime (taken as its intime)", f"stay_id {stay}")
    stays.loc[point, "outtime"] = stays.loc[point, "intime"]
    gender = stays["gender"] if "gender" in stays else pd.Series(np.nan, index=stays.index, dtype=object)
    return stays.assign(stay_gender=gender)[["subject_id", "stay_id", "intime", "outtime", "stay_gender"]]


def _mimic_ed_files(root: Path, dataset: str) -> dict:
    """The four tables of the MIMIC-IV-ED join under ``root`` (either spelling of each)."""
    try:
        return {
            "metadata": find_table(root / MIMIC_CXR_JPG_DIR / MIMIC_CXR_METADATA),
            "edstays": find_table(root / EDSTAYS),
            "triage": find_table(root / TRIAGE),
            "patients": find_table(*(root / path for path in PATIENTS_PATHS)),
        }
    except DatasetFormatError as e:
        raise DatasetFormatError(f"{e} (needed for {dataset} clinical data)") from e


def _check_window(window_days, caller):
    if window_days is None or not float(window_days) >= 0:
        raise ValueError(f"{caller}: window_days must be >= 0, got {window_days!r}")


def _join_mimic_ed(files: dict, wanted, window_days, dataset: str) -> dict:
    """``{dicom_id: record}`` of the images ``wanted`` (dicom_ids, or None: every image of the
    metadata table), joined as :func:`load_mimic_cxr_clinical` describes; ``dataset`` names
    the images in the log."""
    skips = SkipLog(f"{dataset} clinical")
    meta = _read(files["metadata"], _CXR_COLUMNS)
    meta["dicom_id"] = meta["dicom_id"].str.strip()
    if wanted is not None:
        meta = meta[meta["dicom_id"].isin(set(wanted))]
    meta = meta[meta["dicom_id"].notna() & (meta["dicom_id"] != "")].drop_duplicates("dicom_id")
    for dicom_id in sorted(set(wanted or ()) - set(meta["dicom_id"])):
        skips.skip(f"image not in {files['metadata'].name} (no clinical record)", dicom_id)
    images = pd.DataFrame({
        "dicom_id": meta["dicom_id"],
        "subject_id": _ids(meta["subject_id"]),
        "time": _acquisition_times(meta["StudyDate"], meta["StudyTime"]),
        "year": pd.to_datetime(_ids(meta["StudyDate"]).astype(str), format="%Y%m%d", errors="coerce").dt.year,
    }).reset_index(drop=True)
    for dicom_id in images.loc[images["time"].isna(), "dicom_id"]:
        skips.skip("no valid StudyDate/StudyTime (no ED stay matched)", dicom_id)
    subjects = set(images["subject_id"].dropna())

    stays = _read(files["edstays"], _EDSTAYS_COLUMNS, optional=("gender",))
    stays = stays[_ids(stays["subject_id"]).isin(subjects).to_numpy()]
    stays = _clean_stays(stays, files["edstays"], skips)
    matched = _match_stays(images, stays, pd.Timedelta(days=float(window_days)))

    triage = _read(files["triage"], _TRIAGE_COLUMNS, optional=("chiefcomplaint",))
    triage["stay_id"] = _ids(triage["stay_id"])
    triage = triage[triage["stay_id"].isin(set(matched["stay_id"].dropna()))].drop_duplicates("stay_id")
    for name in TRIAGE_FIELDS:
        triage[name] = _raw_values(triage[name])
    matched = matched.merge(triage.drop(columns=["subject_id"], errors="ignore"), on="stay_id", how="left")
    no_triage = matched["stay_id"].notna() & ~matched["stay_id"].isin(set(triage["stay_id"]))
    for stay in matched.loc[no_triage, "stay_id"]:
        skips.skip("matched stay absent from triage.csv (vitals missing)", f"stay_id {stay}")

    patients = _read(files["patients"], _PATIENTS_COLUMNS)
    patients["subject_id"] = _ids(patients["subject_id"])
    patients = patients[patients["subject_id"].isin(subjects)].drop_duplicates("subject_id")
    patients["anchor_age"] = pd.to_numeric(patients["anchor_age"], errors="coerce")
    patients["anchor_year"] = pd.to_numeric(patients["anchor_year"], errors="coerce")
    matched = matched.merge(patients, on="subject_id", how="left")
    for subject in matched.loc[matched["anchor_age"].isna(), "subject_id"]:
        skips.skip("subject absent from patients.csv or no anchor_age (age unknown)", f"subject_id {subject}")
    age = matched["anchor_age"] + matched["year"] - matched["anchor_year"]
    gender = matched["gender"].where(matched["gender"].notna(), matched["stay_gender"])

    table = {}
    for k, row in enumerate(matched.itertuples(index=False)):
        stay = row.stay_id
        record = {name: getattr(row, name) for name in TRIAGE_FIELDS}
        complaint = getattr(row, "chiefcomplaint", np.nan)
        record.update(
            age=float(age.iloc[k]) if pd.notna(age.iloc[k]) else math.nan,
            gender=None if pd.isna(gender.iloc[k]) else str(gender.iloc[k]).strip(),
            chiefcomplaint=None if pd.isna(complaint) else str(complaint),
            stay_id=None if pd.isna(stay) else int(stay),
            match=row.match,
            gap_hours=None if pd.isna(row.gap) else float(row.gap) / 3600.0,
        )
        for name in TRIAGE_FIELDS:
            if record[name] is None or record[name] is pd.NA:
                record[name] = math.nan
        table[row.dicom_id] = record
    skips.report(logger)
    kinds = pd.Series([r["match"] for r in table.values()]).value_counts()
    logger.info(
        "%s clinical: %d image(s): %d inside an ED stay, %d nearest stay within %s day(s), %d without a stay",
        dataset, len(table), kinds.get("inside", 0), kinds.get("nearest", 0), window_days, kinds.get("none", 0),
    )
    return table


def load_mimic_cxr_clinical(root=None, window_days=7, dicom_ids=None) -> dict:
    """``{dicom_id: raw clinical record}`` of MIMIC-CXR images from MIMIC-IV-ED and MIMIC-IV.

    The join of the module docstring (MDF-Net's rule): each image, found by ``dicom_id`` in
    the MIMIC-CXR-JPG metadata (``subject_id``, ``StudyDate`` + ``StudyTime``), takes the
    MIMIC-IV-ED stay of its subject that contains the acquisition time, else the nearest
    one within ``window_days``, else none; age and gender come from MIMIC-IV ``patients``.

    Args:
        root: dataset root holding ``mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz``,
            ``mimic-iv-ed/ed/{edstays,triage}.csv.gz``, ``mimic-iv/hosp/patients.csv.gz``
            (MIMIC-IV 1.0: ``mimic-iv/core/patients.csv.gz``), each gzipped as PhysioNet
            ships it or unzipped (``.csv``); default ``$CXR_DATASETS``/``./datasets``.
        window_days: largest gap (days) between the image time and a stay not containing it.
        dicom_ids: images to join (e.g. those of a MIMIC-CXR label split); default every
            image of the metadata table.

    Each record holds the triage values as the file has them (``temperature``,
    ``heartrate``, ``resprate``, ``o2sat``, ``sbp``, ``dbp``, ``pain``, ``acuity``: floats,
    text, or NaN, all NaN without a stay), ``chiefcomplaint``, ``age`` (anchor_age + study
    year - anchor_year, NaN if the patient is unknown), ``gender`` (MIMIC-IV patients, else
    the stay's), ``stay_id`` (int or None), ``match`` (``"inside"``, ``"nearest"``,
    ``"none"``) and ``gap_hours`` (0 inside, None without a stay). Images absent from the
    metadata table get no record (reported). Missing files or columns raise
    :class:`DatasetFormatError`; a negative window ValueError.
    """
    _check_window(window_days, "load_mimic_cxr_clinical")
    files = _mimic_ed_files(dataset_root(root), "MIMIC-CXR")
    wanted = None if dicom_ids is None else list(dict.fromkeys(str(i).strip() for i in dicom_ids))
    return _join_mimic_ed(files, wanted, window_days, "MIMIC-CXR")


def load_reflacx_clinical(root=None, window_days=7, dicom_ids=None) -> dict:
    """``{dicom_id: raw clinical record}`` of REFLACX images from MIMIC-IV-ED and MIMIC-IV.

    REFLACX's images are MIMIC-CXR images: the join and the records are those of
    :func:`load_mimic_cxr_clinical`. ``dicom_ids``: images to join; default every dicom_id
    of the REFLACX metadata (``reflacx/main_data/metadata_phase_{1,2,3}.csv``, needed then).
    Missing files or columns raise :class:`DatasetFormatError`; a negative window ValueError.
    """
    _check_window(window_days, "load_reflacx_clinical")
    root = dataset_root(root)
    files = _mimic_ed_files(root, "REFLACX")
    if dicom_ids is None:
        wanted = _reflacx_dicom_ids(root)
    else:
        wanted = list(dict.fromkeys(str(i).strip() for i in dicom_ids))
    return _join_mimic_ed(files, wanted, window_days, "REFLACX")


def load_clinical_csv(path, key="dicom_id") -> dict:
    """``{key value: {column: raw value}}`` from a user CSV with one row per image.

    Any columns; numeric cells become floats, other text stays a string, blanks NaN. Rows
    with a blank key are skipped (reported); a duplicate key raises
    :class:`DatasetFormatError` (which row to use would be a guess).
    """
    path = Path(path)
    frame = read_csv(path, (key,), dtype=str)
    keys = frame[key].str.strip()
    blank = keys.isna() | (keys == "")
    if blank.any():
        logger.warning("%s: %d row(s) with a blank %r skipped", path, int(blank.sum()), key)
    lines = np.arange(len(frame))[~blank.to_numpy()] + 2
    frame, keys = frame[~blank], keys[~blank]
    repeated = keys.duplicated(keep=False).to_numpy()
    if repeated.any():
        first = keys[repeated].iloc[0]
        where = (lines[(keys == first).to_numpy()]).tolist()[:5]
        raise DatasetFormatError(
            f"{path}: duplicate {key} value {first!r} on lines {where} ({int(keys.duplicated().sum())} repeated "
            f"value(s) in column {key!r}; one row per image expected)"
        )
    columns = [c for c in frame.columns if c != key]
    values = {c: _raw_values(frame[c]).tolist() for c in columns}
    table = {}
    for i, k in enumerate(keys):
        table[k] = {c: (math.nan if values[c][i] is None else values[c][i]) for c in columns}
    logger.info("%s: clinical records of %d image(s), columns %s", path, len(table), columns)
    return table


def vindr_clinical_from_dicom(path) -> dict:
    """``{"age", "gender", "patient_age_raw"}`` of a VinDr DICOM's header.

    ``age`` in years (``065Y`` -> 65, ``040M`` -> 3.33), NaN when missing, garbled or zero
    (``000Y`` is the usual placeholder for unknown); ``gender`` ``"M"``/``"F"``/``"O"`` or None.
    """
    header = read_dicom_header(path)
    age = header["patient_age_years"]
    return {
        "age": float(age) if age else math.nan,
        "gender": header["patient_sex"],
        "patient_age_raw": header["patient_age_raw"],
    }


def load_vindr_clinical(root=None, image_ids=None) -> dict:
    """``{image_id: record}`` from the headers of ``vindr-cxr/{train,test}/<image_id>.dicom``.

    ``image_ids``: only these images (default all). Unreadable DICOMs are skipped (reported).
    """
    base = dataset_root(root) / VINDR_DIR
    folders = [base / f for f in VINDR_IMAGE_FOLDERS if (base / f).is_dir()]
    if not folders:
        raise DatasetFormatError(f"{base}/train, {base}/test: folder not found (VinDr-CXR DICOMs)")
    wanted = None if image_ids is None else {str(i) for i in image_ids}
    skips = SkipLog("VinDr-CXR clinical")
    table = {}
    for folder in folders:
        for path in sorted(folder.glob(f"*{VINDR_DICOM_SUFFIX}")):
            if (wanted is None or path.stem in wanted) and path.stem not in table:
                try:
                    table[path.stem] = vindr_clinical_from_dicom(path)
                except DicomReadError as e:
                    skips.skip("unreadable DICOM header", str(e))
    for image_id in sorted((wanted or set()) - set(table)):
        skips.skip("no DICOM for image", image_id)
    skips.report(logger)
    return table


def load_clinical_table(source, dataset, root=None, window_days=7, keys=None):
    """``(table, record key)`` for ``cfg.CXR.CLINICAL.SOURCE`` and a dataset name.

    ``dataset``: ``"reflacx"``, ``"mimic_cxr"`` (MIMIC-CXR-JPG image labels) or ``"vindr"``.
    ``source``: ``"mimic-iv-ed"`` (REFLACX and MIMIC-CXR: :func:`load_reflacx_clinical`,
    :func:`load_mimic_cxr_clinical`), ``"dicom"`` (VinDr headers), or the path of a CSV
    (plain or gzipped) keyed by ``dicom_id`` (VinDr: ``image_id`` if the CSV has that
    column). ``keys``: image keys to load (default: every REFLACX image, every image of the
    MIMIC-CXR-JPG metadata, every VinDr DICOM; a CSV is read whole). The record key is the
    dataset dict field to join on. Raises ValueError for an unknown dataset or a source that
    does not apply to it.
    """
    dataset = str(dataset).lower()
    if dataset not in ("reflacx", "mimic_cxr", "vindr"):
        raise ValueError(f"clinical data: unknown dataset {dataset!r} (reflacx, mimic_cxr or vindr)")
    record_key = "vindr_image_id" if dataset == "vindr" else "dicom_id"
    if source == "mimic-iv-ed":
        if dataset == "vindr":
            raise ValueError(
                "clinical SOURCE 'mimic-iv-ed' joins MIMIC-CXR images: it applies to mimic_cxr and REFLACX only "
                "(VinDr: 'dicom' or a CSV)"
            )
        if dataset == "mimic_cxr":
            return load_mimic_cxr_clinical(root, window_days=window_days, dicom_ids=keys), record_key
        return load_reflacx_clinical(root, window_days=window_days, dicom_ids=keys), record_key
    if source == "dicom":
        if dataset != "vindr":
            raise ValueError("clinical SOURCE 'dicom' applies to VinDr-CXR only (MIMIC-CXR headers hold no age)")
        return load_vindr_clinical(root, image_ids=keys), record_key
    path = Path(str(source)).expanduser()
    if not str(source) or not path.name.lower().endswith((".csv", ".csv.gz")):
        raise ValueError(
            f"clinical SOURCE must be 'mimic-iv-ed', 'dicom' or the path of a .csv (or .csv.gz) file, got {source!r}"
        )
    csv_key = "dicom_id"
    if dataset == "vindr" and table_exists(path) and "image_id" in read_csv(path, nrows=0).columns:
        csv_key = "image_id"
    return load_clinical_csv(path, key=csv_key), record_key


def attach_clinical(records, table, key="dicom_id") -> dict:
    """Set ``record["clinical"]`` of each dataset dict to a copy of ``table[record[key]]``.

    Records without an entry are kept, with ``clinical`` None (featurizers impute them
    entirely and flag every value missing). Returns ``{"total", "with_clinical",
    "without_clinical"}`` and warns once when some images have none.
    """
    table = {str(k): v for k, v in table.items()}
    with_clinical = 0
    examples = []
    for record in records:
        value = record.get(key)
        raw = table.get(str(value)) if value is not None else None
        record["clinical"] = dict(raw) if raw is not None else None
        if raw is not None:
            with_clinical += 1
        elif len(examples) < 3:
            examples.append(str(value))
    counts = {"total": len(records), "with_clinical": with_clinical, "without_clinical": len(records) - with_clinical}
    if counts["without_clinical"]:
        logger.warning(
            "clinical data: %d of %d image(s) have no record (kept, clinical=None; e.g. %s=%s)",
            counts["without_clinical"], counts["total"], key, ", ".join(examples),
        )
    else:
        logger.info("clinical data attached to all %d image(s)", counts["total"])
    return counts
