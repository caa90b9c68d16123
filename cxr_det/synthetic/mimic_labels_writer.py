"""Synthetic MIMIC-CXR-JPG image-label tables and JPGs (schema:
:mod:`cxr_det.formats.mimic_cxr_format`, MIMIC-CXR-JPG v2.0.0 on PhysioNet).

Writes under ``<out>/mimic-cxr-jpg/``: ``mimic-cxr-2.0.0-{chexpert,negbio,split,metadata}.csv[.gz]``
and ``files/pNN/p<subject>/s<study>/<dicom_id>.jpg``. Like the real release: one label row
per study (uncertain and blank cells; the NegBio table differs from the CheXpert one in a
few cells), several studies per subject and images per study (PA/AP frontals, LATERAL, LL,
some blank ViewPosition), splits train / validate / test by subject. Images are plain
synthetic chests (learnable labels come later). Deterministic in ``seed``.

It claims the whole ``mimic-cxr-jpg`` folder, so do not point it at the root of a synthetic
REFLACX dataset (whose MIMIC images live there); use a root of its own.
"""
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
from cxr_det.synthetic.dataset_writer import DatasetWriter, unique_ints
from cxr_det.synthetic.mimic_writer import new_dicom_id
from cxr_det.synthetic.render import render_image, to_uint8

__all__ = ["make_mimic_cxr_labels"]

_CELL_TEXT = ("1.0", "0.0", "-1.0", "")
_CELL_P = (0.15, 0.15, 0.08, 0.62)
_VIEWS = (("PA", 0.4), ("AP", 0.35), ("LATERAL", 0.15), ("LL", 0.05), ("", 0.05))


def _csv(shipped):
    """The ``.csv`` name of a table shipped as ``.csv.gz`` (DatasetWriter.csv adds ``.gz``)."""
    return shipped[: -len(".gz")]


def make_mimic_cxr_labels(out, n_subjects, seed, size=64, gzipped=True) -> dict:
    """Write synthetic MIMIC-CXR-JPG label, split and metadata tables with their JPGs.

    Args:
        out: dataset root; ``out/mimic-cxr-jpg`` is (re)written (refused if it exists and was
            not written by the generator).
        n_subjects: subjects (>= 3: at least one per split); each has 1-3 studies of 1-3 images.
        seed: int; same seed, same files.
        size: nominal image side in pixels.
        gzipped: tables as ``.csv.gz`` (as shipped) or ``.csv``.

    Returns:
        summary dict: ``subjects``, ``studies``, ``images``, ``images_per_split``
        (train/validate/test), ``views`` (count per ViewPosition, "" = blank), ``files``.
    """
    n = int(n_subjects)
    if n < 3:
        raise ValueError(f"make_mimic_cxr_labels needs at least 3 subjects, got {n}")
    writer = DatasetWriter(Path(out))
    writer.claim(MIMIC_CXR_JPG_DIR)
    rng = np.random.default_rng([int(seed), 13])
    subjects = sorted(unique_ints(rng, n, 10_000_000, 20_000_000))
    study_taken, dicom_taken = set(), set()
    parts = ["train", "validate", "test"] + [str(p) for p in rng.choice(["train", "validate", "test"], p=[0.8, 0.1, 0.1], size=n - 3)]
    chexpert_rows, negbio_rows, split_rows, meta_rows = [], [], [], []
    views = {v: 0 for v, _ in _VIEWS}
    for subject, part in zip(subjects, parts):
        n_studies = int(rng.integers(1, 4))
        for k, study in enumerate(unique_ints(rng, n_studies, 50_000_000, 60_000_000, study_taken)):
            cells = [_CELL_TEXT[i] for i in rng.choice(4, size=len(MIMIC_CXR_OBSERVATIONS), p=_CELL_P)]
            negbio = [("0.0" if c == "-1.0" else c) if rng.random() < 0.3 else c for c in cells]
            chexpert_rows.append([subject, study] + cells)
            negbio_rows.append([subject, study] + negbio)
            date = 21500101 + 10000 * int(rng.integers(0, 30)) + 100 * k + int(rng.integers(1, 28))
            for _ in range(int(rng.integers(1, 4))):
                view = str(rng.choice([v for v, _ in _VIEWS], p=[p for _, p in _VIEWS]))
                views[view] += 1
                dicom_id = new_dicom_id(rng, dicom_taken)
                img, _, _ = render_image(rng, size=size)
                rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}.jpg"
                writer.jpg(f"{MIMIC_CXR_JPG_DIR}/{rel}", to_uint8(img), quality=90)
                h, w = img.shape
                split_rows.append([dicom_id, study, subject, part])
                meta_rows.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, h, w, date,
                                  f"{int(rng.integers(0, 24)) * 10000 + int(rng.integers(0, 60)) * 100 + int(rng.integers(0, 60))}.{int(rng.integers(0, 1000))}", "CHEST (PA AND LAT)",
                                  {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}.get(view, ""),
                                  "Erect"])
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_CHEXPERT)}", MIMIC_CXR_LABEL_COLUMNS, chexpert_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_NEGBIO)}", MIMIC_CXR_LABEL_COLUMNS, negbio_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_SPLIT)}", MIMIC_CXR_SPLIT_COLUMNS, split_rows, gzipped)
    writer.csv(f"{MIMIC_CXR_JPG_DIR}/{_csv(MIMIC_CXR_METADATA)}", MIMIC_CXR_METADATA_COLUMNS, meta_rows, gzipped)
    per_split = {p: sum(r[3] == p for r in split_rows) for p in ("train", "validate", "test")}
    return {"subjects": n, "studies": len(chexpert_rows), "images": len(split_rows), "images_per_split": per_split,
            "views": views, "files": writer.files}
