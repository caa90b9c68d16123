"""Synthetic MIMIC-CXR-JPG metadata, MIMIC-IV-ED ``edstays``/``triage`` and MIMIC-IV ``patients``.

The clinical side of the synthetic REFLACX dataset (:mod:`.reflacx_writer`): study times of
each image, one metadata row per image, emergency-department stays around (or near, or
not at) the studies, triage vitals that carry the patient's state, decoy stays and
subjects, and the real tables' dirt (Celsius temperatures, blanks, text in numeric
columns, impossible values) injected into triage at :data:`TRIAGE_DIRT_RATES`.

Paths and columns come from :mod:`cxr_det.formats.mimic_cxr_format` (MIMIC-CXR-JPG v2.0.0)
and :mod:`cxr_det.formats.mimic_iv_ed_format` (MIMIC-IV-ED ``ed/edstays``, ``ed/triage``;
MIMIC-IV 2.x ``hosp/patients``), which cite their PhysioNet sources.
"""
from collections import Counter
from datetime import datetime, timedelta

import numpy as np

from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_IMAGE_PATH, MIMIC_CXR_JPG_DIR, MIMIC_CXR_METADATA, MIMIC_CXR_METADATA_COLUMNS
from cxr_det.formats.mimic_iv_ed_format import (
    ANCHOR_AGE_CAP,
    EDSTAYS,
    EDSTAYS_COLUMNS,
    PATIENTS,
    PATIENTS_COLUMNS,
    TRIAGE,
    TRIAGE_COLUMNS,
    TRIAGE_FIELDS,
)
from cxr_det.synthetic.dataset_writer import unique_ints

__all__ = ["TRIAGE_DIRT_RATES", "image_path", "new_dicom_id", "write_clinical_tables"]

# Fraction of triage rows given each kind of dirt (each kind appears at least once).
TRIAGE_DIRT_RATES = {
    "celsius": 0.04,
    "missing": 0.05,
    "pain_text": 0.04,
    "pain_88": 0.03,
    "dbp_278": 0.03,
    "resprate_62": 0.03,
    "o2sat_58": 0.03,
}

_COMPLAINTS = {
    "infective": ("Fever", "Cough, Fever", "Fever, Dyspnea", "Cough", "Fever, Chills", "Weakness, Fever"),
    "cardiac": ("Dyspnea", "SOB", "Shortness of breath, Leg swelling", "Chest pain, Dyspnea", "Edema", "DYSPNEA"),
    "neutral": ("Chest pain", "Abd pain", "Fall", "Cough", "Dyspnea", "Weakness", "Syncope", "Transfer", "Back pain"),
}
_RACES = ("WHITE", "WHITE", "WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN - CHINESE", "OTHER", "UNKNOWN")
_TRANSPORT = ("AMBULANCE", "WALK IN", "WALK IN", "UNKNOWN", "OTHER")
_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")


def image_path(image, suffix):
    """Path of ``image`` inside a MIMIC-CXR release folder: ``files/pNN/p<subject>/s<study>/<dicom_id><suffix>``.

    ``image`` has ``subject_id``, ``study_id`` and ``dicom_id``; ``suffix`` is ``.jpg``
    (MIMIC-CXR-JPG) or ``.dcm`` (MIMIC-CXR).
    """
    return MIMIC_CXR_IMAGE_PATH.format(
        subject_group=str(image.subject_id)[:2],
        subject_id=image.subject_id,
        study_id=image.study_id,
        dicom_id=image.dicom_id,
        suffix=suffix,
    )


def new_dicom_id(rng, taken):
    """A MIMIC-CXR ``dicom_id`` (five dash-joined groups of 8 hex digits) not in ``taken``.

    ``taken`` (a set) is updated in place; each candidate draws 20 bytes from ``rng``.
    """
    while True:
        value = "-".join(rng.bytes(4).hex() for _ in range(5))
        if value not in taken:
            taken.add(value)
            return value


def _csv(shipped):
    """The ``.csv`` name of a table the schema names as shipped (``.csv.gz``)."""
    return shipped[: -len(".gz")] if shipped.endswith(".gz") else shipped


def _fmt_dt(dt):
    """``YYYY-MM-DD HH:MM:SS``, MIMIC-IV's date-time format."""
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _vitals(rng, state):
    """Triage vitals (floats) and complaint for a patient in ``state``; the look-alike signal lives here."""
    if state == "infective":
        temp = rng.uniform(100.5, 103.0) if rng.random() < 0.88 else rng.uniform(98.8, 100.4)
        hr = rng.uniform(100, 125) if rng.random() < 0.9 else rng.normal(94, 6)
        rr, o2 = rng.uniform(22, 28), rng.uniform(91, 95)
        sbp, dbp = rng.normal(122, 14), rng.normal(72, 9)
        pain, acuity = int(rng.integers(0, 7)), float(rng.choice([2, 3], p=[0.6, 0.4]))
    elif state == "cardiac":
        temp = rng.uniform(97.5, 99.0)
        hr = rng.normal(92, 12)
        rr = rng.uniform(20, 28)
        o2 = rng.uniform(86, 92) if rng.random() < 0.9 else rng.uniform(92, 95)
        sbp = rng.uniform(150, 190) if rng.random() < 0.88 else rng.normal(135, 10)
        dbp = rng.normal(92, 10)
        pain, acuity = int(rng.integers(0, 5)), float(rng.choice([1, 2], p=[0.35, 0.65]))
    else:
        temp = float(np.clip(rng.normal(98.2, 0.55), 96.5, 100.2))
        hr = rng.normal(84, 13)
        rr = rng.normal(17, 2)
        o2 = min(100.0, rng.normal(97.5, 1.5))
        sbp, dbp = rng.normal(133, 18), rng.normal(78, 11)
        pain = int(rng.choice(11, p=np.r_[0.35, np.full(10, 0.065)]))
        acuity = float(rng.choice([2, 3, 4], p=[0.35, 0.5, 0.15]))
    complaint = str(rng.choice(_COMPLAINTS[state]))
    return {
        "temperature": round(float(temp), 1),
        "heartrate": float(round(hr)),
        "resprate": float(round(rr)),
        "o2sat": float(round(min(o2, 100.0))),
        "sbp": float(round(sbp)),
        "dbp": float(round(dbp)),
        "pain": str(pain),
        "acuity": acuity,
        "chiefcomplaint": complaint,
    }


def _age_for(rng, state):
    """Age in years at the first study; cardiac patients are older."""
    if state == "cardiac":
        return int(rng.uniform(66, 97))
    if state == "infective":
        return int(rng.uniform(25, 88))
    return int(rng.uniform(20, 90))


def _inject_dirt(rng, triage_rows):
    """Dirty a few rows per kind of dirt (disjoint rows, each kind at least once)."""
    n = len(triage_rows)
    order = [int(i) for i in rng.permutation(n)]
    pos = 0
    pain_texts = ["unable", "uta", "8-9", "Unable", "10+", "denies"]
    counts = Counter()
    for kind, rate in TRIAGE_DIRT_RATES.items():
        for k in range(max(1, int(round(rate * n)))):
            if pos >= n:
                return counts
            row = triage_rows[order[pos]]
            pos += 1
            counts[kind] += 1
            if kind == "celsius":
                if row["temperature"] is not None:
                    row["temperature"] = round((row["temperature"] - 32.0) * 5.0 / 9.0, 1)
            elif kind == "missing":
                keys = list(TRIAGE_FIELDS)
                for key in rng.choice(keys, size=int(rng.integers(1, 4)), replace=False):
                    row[str(key)] = None
            elif kind == "pain_text":
                row["pain"] = pain_texts[k] if k < 3 else str(rng.choice(pain_texts))
            elif kind == "pain_88":
                row["pain"] = "88"
            elif kind == "dbp_278":
                row["dbp"] = 278.0
            elif kind == "resprate_62":
                row["resprate"] = 62.0
            elif kind == "o2sat_58":
                row["o2sat"] = 58.0
    return counts


def _num(v, fmt="{:.1f}"):
    """A vital as written in triage: one decimal, or empty when missing."""
    return "" if v is None else fmt.format(v)



def write_clinical_tables(writer, rng, images, gzipped=True):
    """Write MIMIC-CXR-JPG metadata, MIMIC-IV-ED edstays/triage and MIMIC-IV patients.

    Args:
        writer: the :class:`~cxr_det.synthetic.dataset_writer.DatasetWriter` of the root.
        rng: the dataset's numpy Generator (the draws continue the REFLACX tables' stream).
        images: the REFLACX images (``reflacx_writer._Image``: ``subject_id``, ``study_id``,
            ``dicom_id``, ``view``, ``height``, ``width`` and the patient ``state``
            ``"infective"``/``"cardiac"``/``"neutral"``); each one's ``study_dt`` is set here.
        gzipped: write ``.csv.gz`` (as PhysioNet ships them) instead of ``.csv``.

    Returns:
        dict: ``ed_stays`` (rows of edstays), ``images_with_ed_stay`` (how many images have a
        stay ``containing`` the study, only one ``nearby`` (1-6 days away), or ``none``) and
        ``triage_dirt`` (rows dirtied per kind).
    """
    # Study times per subject: first study in a shifted year, later ones weeks to years after.
    by_subject = {}
    for im in images:
        by_subject.setdefault(im.subject_id, []).append(im)
    patients = {}
    for sid in sorted(by_subject):
        ims = by_subject[sid]
        dt = datetime(int(rng.integers(2110, 2190)), 1, 1) + timedelta(days=int(rng.integers(0, 365)), seconds=float(rng.uniform(0, 86400)))
        for k, im in enumerate(ims):
            if k:
                dt = dt + timedelta(days=int(rng.integers(40, 700)), seconds=float(rng.uniform(-20000, 20000)))
            im.study_dt = dt.replace(microsecond=int(rng.integers(0, 1000)) * 1000)
        first = ims[0]
        age = _age_for(rng, first.state)
        anchor_year = first.study_dt.year - int(rng.integers(0, 3))
        anchor_age = age - (first.study_dt.year - anchor_year)
        patients[sid] = {
            "gender": "M" if rng.random() < 0.5 else "F",
            "anchor_age": ANCHOR_AGE_CAP if anchor_age > 89 else anchor_age,
            "anchor_year": anchor_year,
            "anchor_year_group": str(rng.choice(_YEAR_GROUPS)),
            "dod": "",
        }
        if rng.random() < 0.08:
            last = ims[-1].study_dt + timedelta(days=int(rng.integers(3, 900)))
            patients[sid]["dod"] = last.strftime("%Y-%m-%d")

    cxr_rows = []
    for im in sorted(images, key=lambda i: (i.subject_id, i.study_id)):
        t = im.study_dt
        study_time = t.hour * 10000 + t.minute * 100 + t.second + t.microsecond / 1e6
        pa = im.view == "PA"
        desc = "CHEST (PA AND LAT)" if pa else "CHEST (PORTABLE AP)"
        cxr_rows.append(
            [im.dicom_id, im.subject_id, im.study_id, desc, im.view, im.height, im.width, t.strftime("%Y%m%d"), f"{study_time:.3f}".rstrip("0").rstrip("."), desc, "postero-anterior" if pa else "antero-posterior", "Erect" if pa else "Recumbent"]
        )
    writer.csv(_csv(f"{MIMIC_CXR_JPG_DIR}/{MIMIC_CXR_METADATA}"), MIMIC_CXR_METADATA_COLUMNS, cxr_rows, gzipped=gzipped)

    stay_taken = set()
    hadm_taken = set()
    stays = []

    def add_stay(sid, intime, outtime, state):
        """Append one ED stay of subject ``sid`` with triage vitals drawn for ``state``."""
        vit = _vitals(rng, state)
        admitted = rng.random() < (0.7 if state != "neutral" else 0.3)
        disposition = "ADMITTED" if admitted else str(rng.choice(["HOME", "HOME", "HOME", "LEFT WITHOUT BEING SEEN", "TRANSFER", "OTHER"]))
        stays.append(
            {
                "subject_id": sid,
                "hadm_id": unique_ints(rng, 1, 20_000_000, 30_000_000, hadm_taken)[0] if admitted else None,
                "stay_id": unique_ints(rng, 1, 30_000_000, 40_000_000, stay_taken)[0],
                "intime": intime,
                "outtime": outtime,
                "race": str(rng.choice(_RACES)),
                "transport": str(rng.choice(_TRANSPORT)),
                "disposition": disposition,
                **vit,
            }
        )

    matched = Counter()
    for im in images:
        kind = rng.choice(3, p=[0.8, 0.08, 0.12])
        if kind == 0:  # a stay containing the study
            intime = im.study_dt - timedelta(seconds=float(rng.uniform(0.3, 6.0) * 3600))
            outtime = im.study_dt + timedelta(seconds=float(rng.uniform(0.5, 12.0) * 3600))
            add_stay(im.subject_id, intime.replace(microsecond=0), (outtime + timedelta(seconds=1)).replace(microsecond=0), im.state)
            matched["containing"] += 1
        elif kind == 1:  # only a stay 1-6 days away
            sign = 1 if rng.random() < 0.5 else -1
            intime = im.study_dt + sign * timedelta(days=float(rng.uniform(1.0, 6.0)))
            if sign < 0:
                intime -= timedelta(hours=12)
            outtime = intime + timedelta(hours=float(rng.uniform(2, 10)))
            add_stay(im.subject_id, intime.replace(microsecond=0), outtime.replace(microsecond=0), im.state)
            matched["nearby"] += 1
        else:
            matched["none"] += 1
    # Decoys: unrelated stays of the same subjects, and subjects not in REFLACX at all.
    for sid in sorted(by_subject):
        if rng.random() < 0.3:
            studies = [im.study_dt for im in by_subject[sid]]
            for _ in range(20):
                when = studies[0] + timedelta(days=float(rng.uniform(30, 600)) * (1 if rng.random() < 0.5 else -1))
                if min(abs((when - s).total_seconds()) for s in studies) > 10 * 86400:
                    intime = when.replace(microsecond=0)
                    add_stay(sid, intime, intime + timedelta(hours=float(rng.uniform(2, 10))), "neutral")
                    break
    decoy_subjects = unique_ints(rng, max(3, len(images) // 10), 10_000_000, 20_000_000, set(by_subject))
    for sid in decoy_subjects:
        patients[sid] = {
            "gender": "M" if rng.random() < 0.5 else "F",
            "anchor_age": int(rng.integers(18, 90)),
            "anchor_year": int(rng.integers(2110, 2190)),
            "anchor_year_group": str(rng.choice(_YEAR_GROUPS)),
            "dod": "",
        }
        for _ in range(int(rng.integers(1, 3))):
            intime = datetime(patients[sid]["anchor_year"], 1, 1) + timedelta(seconds=float(rng.uniform(0, 3 * 365 * 86400)))
            intime = intime.replace(microsecond=0)
            add_stay(sid, intime, intime + timedelta(hours=float(rng.uniform(2, 10))), "neutral")

    stays.sort(key=lambda s: (s["subject_id"], s["intime"]))
    dirt = _inject_dirt(rng, stays)
    writer.csv(
        _csv(EDSTAYS),
        EDSTAYS_COLUMNS,
        [
            [s["subject_id"], "" if s["hadm_id"] is None else s["hadm_id"], s["stay_id"], _fmt_dt(s["intime"]), _fmt_dt(s["outtime"]), patients[s["subject_id"]]["gender"], s["race"], s["transport"], s["disposition"]]
            for s in stays
        ],
        gzipped=gzipped,
    )
    writer.csv(
        _csv(TRIAGE),
        TRIAGE_COLUMNS,
        [
            [s["subject_id"], s["stay_id"], _num(s["temperature"]), _num(s["heartrate"]), _num(s["resprate"]), _num(s["o2sat"]), _num(s["sbp"]), _num(s["dbp"]), s["pain"] or "", _num(s["acuity"]), s["chiefcomplaint"]]
            for s in stays
        ],
        gzipped=gzipped,
    )
    writer.csv(
        _csv(PATIENTS),
        PATIENTS_COLUMNS,
        [[sid, p["gender"], p["anchor_age"], p["anchor_year"], p["anchor_year_group"], p["dod"]] for sid, p in sorted(patients.items())],
        gzipped=gzipped,
    )
    return {
        "ed_stays": len(stays),
        "images_with_ed_stay": {k: matched.get(k, 0) for k in ("containing", "nearby", "none")},
        "triage_dirt": dict(sorted(dirt.items())),
    }
