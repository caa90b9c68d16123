"""Synthetic CheXpert v1.0 in the ``CheXpert-v1.0-small`` layout (schema:
:mod:`cxr_det.formats.chexpert_format`, Irvin et al. AAAI 2019 / Stanford ML Group page).

Writes ``<out>/chexpert/CheXpert-v1.0-small/{train.csv, valid.csv, train/..., valid/...}``
with what the real files have: several studies per patient, lateral views (AP/PA blank),
frontal AP and PA, uncertain (-1.0) and blank cells in train.csv, 0/1 only in valid.csv,
``Sex`` Unknown and ``Age`` 0 on some rows. Deterministic in ``seed``.

The labels are learnable (rule: :mod:`.finding_labels`; painters: :mod:`.finding_painters`):
every image of a study (frontal and lateral; the lateral is drawn as another frontal-like
chest) shows the study's present findings, uncertain ones faintly (half intensity).
**Atelectasis is clinical-only**: it depends on the patient's age alone (about 0.85 from
65 years, 0.08 below) and is never painted, so only ``Age`` can predict it (a row with
``Age`` 0 still had a true age that decided it). Sex carries no label signal.
"""
from pathlib import Path

import numpy as np

from cxr_det.formats.chexpert_format import (
    CHEXPERT_COLUMNS,
    CHEXPERT_DIR,
    CHEXPERT_FOLDERS,
    CHEXPERT_IMAGE_PATH,
    CHEXPERT_OBSERVATIONS,
    CHEXPERT_TRAIN_CSV,
    CHEXPERT_VALID_CSV,
)
from cxr_det.synthetic.dataset_writer import DatasetWriter
from cxr_det.synthetic.finding_labels import cell_text, label_counts, paint_strengths, sample_study_labels
from cxr_det.synthetic.finding_painters import render_findings
from cxr_det.synthetic.render import to_uint8

__all__ = ["make_chexpert"]

def make_chexpert(out, n_patients, seed, size=64, n_valid_patients=None) -> dict:
    """Write a synthetic CheXpert-v1.0-small under the dataset root ``out``.

    Args:
        out: dataset root; ``out/chexpert/CheXpert-v1.0-small`` is (re)written (refused if it
            exists and was not written by the generator).
        n_patients: patients of train.csv (>= 1), numbered patient00001.. ; each has 1-3
            studies of 1-2 views (view1 frontal, view2 lateral when present).
        seed: int; same seed, same files.
        size: nominal image side in pixels (each image's sides vary 0.85-1.15 x).
        n_valid_patients: patients of valid.csv (default max(1, n_patients // 5)), numbered
            after the training patients, one study each.

    Returns:
        summary dict: ``format`` ("chexpert"), ``root``, ``folder``, ``train_rows``,
        ``valid_rows``, ``patients``, ``files_written``, ``uncertain_cells``,
        ``blank_cells``, ``lateral``, ``sex_unknown``, ``age_zero`` (rows), and
        ``label_counts`` ``{"train"|"valid": {observation: {positive, negative, uncertain,
        blank}}}`` (rows, i.e. images).

    Raises:
        ValueError: ``n_patients`` < 1 or ``n_valid_patients`` < 0.
        FileExistsError: ``out/chexpert`` holds data the generator did not write.
    """
    n = int(n_patients)
    if n < 1:
        raise ValueError(f"make_chexpert needs at least 1 patient, got {n}")
    n_valid = max(1, n // 5) if n_valid_patients is None else int(n_valid_patients)
    if n_valid < 0:
        raise ValueError(f"make_chexpert: n_valid_patients must be >= 0, got {n_valid}")
    folder = CHEXPERT_FOLDERS[0]
    writer = DatasetWriter(Path(out))
    writer.claim(CHEXPERT_DIR)
    rng = np.random.default_rng([int(seed), 12])
    summary = {"format": "chexpert", "root": str(out), "folder": folder, "patients": n + n_valid,
               "uncertain_cells": 0, "blank_cells": 0, "lateral": 0, "sex_unknown": 0, "age_zero": 0}
    tables = {"train": [], "valid": []}
    for index in range(n + n_valid):
        part = "train" if index < n else "valid"
        patient = index + 1
        sex = str(rng.choice(["Male", "Female", "Unknown"], p=[0.45, 0.45, 0.1]))
        true_age = int(rng.integers(18, 90))
        age = true_age if rng.random() > 0.08 else 0
        # The first patients carry the rare cases for sure, so small sets have them too.
        if index == 0:
            sex = "Unknown"
        if index == 1:
            age = 0
        n_studies = 1 if part == "valid" else int(rng.integers(1, 4))
        for study in range(1, n_studies + 1):
            values = sample_study_labels(rng, true_age, expert=part == "valid")
            cells = [cell_text(values[name]) for name in CHEXPERT_OBSERVATIONS]
            strengths = paint_strengths(values)
            with_lateral = rng.random() < 0.4 or index == 0
            views = [("frontal", str(rng.choice(["AP", "PA"])))] + ([("lateral", "")] if with_lateral else [])
            for view, (orientation, ap_pa) in enumerate(views, start=1):
                path = CHEXPERT_IMAGE_PATH.format(folder=folder, part=part, patient=patient, study=study,
                                                  view=view, orientation=orientation)
                # Each image draws from its own generator: its pixels depend on the painted
                # findings only (the clinical-only label draws nothing).
                irng = np.random.default_rng([int(seed), 12, patient, study, view])
                img, _ = render_findings(irng, size, strengths)
                writer.jpg(f"{CHEXPERT_DIR}/{path}", to_uint8(img), quality=90)
                tables[part].append([path, sex, str(age), orientation.capitalize(), ap_pa] + cells)
                summary["lateral"] += orientation == "lateral"
                summary["sex_unknown"] += sex == "Unknown"
                summary["age_zero"] += age == 0
                summary["uncertain_cells"] += cells.count("-1.0")
                summary["blank_cells"] += cells.count("")
    writer.csv(f"{CHEXPERT_DIR}/{folder}/{CHEXPERT_TRAIN_CSV}", CHEXPERT_COLUMNS, tables["train"])
    writer.csv(f"{CHEXPERT_DIR}/{folder}/{CHEXPERT_VALID_CSV}", CHEXPERT_COLUMNS, tables["valid"])
    first = len(CHEXPERT_COLUMNS) - len(CHEXPERT_OBSERVATIONS)
    summary.update(train_rows=len(tables["train"]), valid_rows=len(tables["valid"]), files_written=writer.files,
                   label_counts={part: label_counts(rows, CHEXPERT_OBSERVATIONS, first) for part, rows in tables.items()})
    return summary
