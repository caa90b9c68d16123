"""Synthetic MIMIC-CXR-JPG image-label tables and JPGs with their MIMIC-IV-ED / MIMIC-IV tables
(schemas: :mod:`cxr_det.formats.mimic_cxr_format`, MIMIC-CXR-JPG v2.0.0 on PhysioNet, and
:mod:`cxr_det.formats.mimic_iv_ed_format`).

Writes under ``<out>/``:

* ``mimic-cxr-jpg/mimic-cxr-2.0.0-{chexpert,negbio,split,metadata}.csv[.gz]`` and
  ``mimic-cxr-jpg/files/pNN/p<subject>/s<study>/<dicom_id>.jpg``. Like the real release: one
  label row per study (uncertain and blank cells; the NegBio table differs from the
  CheXpert one in a few cells), several studies per subject and images per study (PA/AP
  frontals, LATERAL, LL, some blank ViewPosition), splits train / validate / test by
  subject. Every image of a study shares the study's ``StudyDate``/``StudyTime``.
* ``mimic-iv-ed/ed/{edstays,triage}.csv[.gz]`` and ``mimic-iv/hosp/patients.csv[.gz]``,
  written by :func:`cxr_det.synthetic.mimic_writer.write_clinical_tables` (the REFLACX
  generator's, dirt included) with one entry per study: most studies fall inside an ED stay
  of their subject, some only near one, some have none. The join the REFLACX registrar uses
  (:func:`cxr_det.data.clinical.tables.load_reflacx_clinical` with these ``dicom_ids``)
  gives each image its triage record and ``age`` = anchor_age + study year - anchor_year.
  Triage vitals are those of a "neutral" patient: they carry no label signal.

Labels are learnable (rule: :mod:`.finding_labels`; painters: :mod:`.finding_painters`):
every image of a study shows the study's present findings (lateral and blank-view images
too, drawn as another frontal-like chest), uncertain ones faintly. **Atelectasis is
clinical-only**: it follows the joined age alone (about 0.85 from 65 years, 0.08 below)
and is never painted. Deterministic in ``seed``.

It claims the ``mimic-cxr-jpg``, ``mimic-iv-ed`` and ``mimic-iv`` folders, so do not point it
at the root of a synthetic REFLACX dataset (whose MIMIC images and tables live there); use
a root of its own.
"""
import csv
import gzip
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from cxr_det.formats.mimic_cxr_format import (
    MIMIC_CXR_CHEXPERT,
    MIMIC_CXR_JPG_DIR,
    MIMIC_CXR_LABEL_COLUMNS,
    MIMIC_CXR_METADATA,
    MIMIC_CXR_METADATA_COLUMNS,
    MIMIC_CXR_NEGBIO,
    MIMIC_CXR_OBSERVATIONS,
    MIMIC_CXR_SPLIT,
    MIMIC_CXR_SPLIT_COLUMNS,
)
from cxr_det.formats.mimic_iv_ed_format import MIMIC_IV_DIR, MIMIC_IV_ED_DIR, PATIENTS
from cxr_det.synthetic.anatomy import random_image_size
from cxr_det.synthetic.dataset_writer import DatasetWriter, unique_ints
from cxr_det.synthetic.finding_labels import cell_text, label_counts, paint_strengths, sample_study_labels
from cxr_det.synthetic.finding_painters import render_findings
from cxr_det.synthetic.mimic_writer import image_path, new_dicom_id, write_clinical_tables
from cxr_det.synthetic.render import to_uint8

__all__ = ["make_mimic_cxr_labels"]

_VIEWS = (("PA", 0.4), ("AP", 0.35), ("LATERAL", 0.15), ("LL", 0.05), ("", 0.05))
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
_PARTS = ("train", "validate", "test")


@dataclass
class _Image:
    subject_id: int
    study_id: int
    dicom_id: str
    view: str
    height: int
    width: int


@dataclass
class _Study:
    """One study, as :func:`write_clinical_tables` reads an image (it sets ``study_dt``)."""

    subject_id: int
    study_id: int
    part: str
    images: list
    state: str = "neutral"
    study_dt: datetime = None

    # write_clinical_tables writes one metadata row per entry from these; the table is
    # rewritten afterwards with a row per image.
    @property
    def dicom_id(self):
        return self.images[0].dicom_id

    @property
    def view(self):
        return self.images[0].view

    @property
    def height(self):
        return self.images[0].height

    @property
    def width(self):
        return self.images[0].width


def _csv(shipped):
    """The ``.csv`` name of a table shipped as ``.csv.gz`` (DatasetWriter.csv adds ``.gz``)."""
    return shipped[: -len(".gz")]


def _study_time(dt):
    """MIMIC-CXR ``StudyTime``: HHMMSS.fff as a number (leading zeros and trailing zeros dropped)."""
    value = dt.hour * 10000 + dt.minute * 100 + dt.second + dt.microsecond / 1e6
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _ages(writer, studies, gzipped):
    """``{study_id: age}`` as the MIMIC-IV join computes it: anchor_age + study year - anchor_year,
    from the patients table just written."""
    path = writer.root / (_csv(PATIENTS) + (".gz" if gzipped else ""))
    with (gzip.open(path, "rt", newline="") if gzipped else open(path, newline="")) as f:
        anchors = {int(r["subject_id"]): (int(r["anchor_age"]), int(r["anchor_year"])) for r in csv.DictReader(f)}
    return {s.study_id: anchors[s.subject_id][0] + s.study_dt.year - anchors[s.subject_id][1] for s in studies}


def make_mimic_cxr_labels(out, n_subjects, seed, size=64, gzipped=True) -> dict:
    """Write synthetic MIMIC-CXR-JPG label, split and metadata tables, their JPGs, and the
    MIMIC-IV-ED / MIMIC-IV tables of the same subjects.

    Args:
        out: dataset root; ``out/{mimic-cxr-jpg,mimic-iv-ed,mimic-iv}`` are (re)written
            (refused if one exists and was not written by the generator).
        n_subjects: subjects (>= 3: at least one per split); each has 1-3 studies of 1-3 images.
        seed: int; same seed, same files.
        size: nominal image side in pixels (each image's sides vary 0.85-1.15 x).
        gzipped: tables as ``.csv.gz`` (as shipped) or ``.csv``.

    Returns:
        summary dict: ``format`` ("mimic-labels"), ``root``, ``subjects``, ``studies``,
        ``images``, ``images_per_split`` (train/validate/test), ``views`` (count per
        ViewPosition, "" = blank), ``files_written``, ``ed_stays``,
        ``studies_with_ed_stay`` (containing / nearby / none), ``triage_dirt``, and
        ``label_counts`` ``{split: {observation: {positive, negative, uncertain, blank}}}``
        of the CheXpert labeler's cells, counted per image.

    Raises:
        ValueError: fewer than 3 subjects.
        FileExistsError: one of the folders holds data the generator did not write.
    """
    n = int(n_subjects)
    if n < 3:
        raise ValueError(f"make_mimic_cxr_labels needs at least 3 subjects, got {n}")
    writer = DatasetWriter(Path(out))
    writer.claim(MIMIC_CXR_JPG_DIR, MIMIC_IV_ED_DIR, MIMIC_IV_DIR)
    rng = np.random.default_rng([int(seed), 13])
    subjects = sorted(unique_ints(rng, n, 10_000_000, 20_000_000))
    study_taken, dicom_taken = set(), set()
    parts = list(_PARTS) + [str(p) for p in rng.choice(_PARTS, p=[0.8, 0.1, 0.1], size=n - 3)]
    views = {v: 0 for v, _ in _VIEWS}
    studies = []
    for subject, part in zip(subjects, parts):
        for study in unique_ints(rng, int(rng.integers(1, 4)), 50_000_000, 60_000_000, study_taken):
            images = []
            for _ in range(int(rng.integers(1, 4))):
                view = str(rng.choice([v for v, _ in _VIEWS], p=[p for _, p in _VIEWS]))
                views[view] += 1
                h, w = random_image_size(rng, size)
                images.append(_Image(subject, study, new_dicom_id(rng, dicom_taken), view, h, w))
            studies.append(_Study(subject, study, part, images))

    # Study times, ED stays, triage and patients (their own generator), then each study's
    # age as the join will compute it: the clinical-only label follows it.
    clinical = write_clinical_tables(writer, np.random.default_rng([int(seed), 13, 1]), studies, gzipped=gzipped)
    writer.files -= 1  # its metadata table is rewritten below, one row per image
    ages = _ages(writer, studies, gzipped)

    chexpert_rows, negbio_rows, split_rows, meta_rows = [], [], [], []
    image_cells = {p: [] for p in _PARTS}
    for st in studies:
        values = sample_study_labels(rng, ages[st.study_id])
        cells = [cell_text(values[name]) for name in MIMIC_CXR_OBSERVATIONS]
        negbio = [("0.0" if c == "-1.0" else c) if rng.random() < 0.3 else c for c in cells]
        chexpert_rows.append([st.subject_id, st.study_id] + cells)
        negbio_rows.append([st.subject_id, st.study_id] + negbio)
        strengths = paint_strengths(values)
        date, time = st.study_dt.strftime("%Y%m%d"), _study_time(st.study_dt)
        for k, im in enumerate(st.images):
            # Each image's own generator: its pixels depend on the painted findings only.
            irng = np.random.default_rng([int(seed), 13, st.subject_id, st.study_id, k])
            img, _ = render_findings(irng, size, strengths, height=im.height, width=im.width)
            writer.jpg(f"{MIMIC_CXR_JPG_DIR}/{image_path(im, '.jpg')}", to_uint8(img), quality=90)
            split_rows.append([im.dicom_id, st.study_id, st.subject_id, st.part])
            desc = "CHEST (PA AND LAT)" if st.images[0].view == "PA" else "CHEST (PORTABLE AP)"
            meta_rows.append([im.dicom_id, st.subject_id, st.study_id, desc, im.view, im.height, im.width, date, time,
                              desc, _VIEW_MEANING.get(im.view, ""), "Erect"])
            image_cells[st.part].append(cells)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_CHEXPERT)}", MIMIC_CXR_LABEL_COLUMNS, chexpert_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_NEGBIO)}", MIMIC_CXR_LABEL_COLUMNS, negbio_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_SPLIT)}", MIMIC_CXR_SPLIT_COLUMNS, split_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_METADATA)}", MIMIC_CXR_METADATA_COLUMNS, meta_rows, gzipped)
    return {
        "format": "mimic-labels",
        "root": str(out),
        "subjects": n,
        "studies": len(chexpert_rows),
        "images": len(split_rows),
        "images_per_split": {p: len(image_cells[p]) for p in _PARTS},
        "views": views,
        "files_written": writer.files,
        "ed_stays": clinical["ed_stays"],
        "studies_with_ed_stay": clinical["images_with_ed_stay"],
        "triage_dirt": clinical["triage_dirt"],
        "label_counts": {p: label_counts(rows, MIMIC_CXR_OBSERVATIONS, 0) for p, rows in image_cells.items()},
    }
