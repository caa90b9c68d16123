"""Synthetic CheXpert v1.0 in the ``CheXpert-v1.0-small`` layout (schema:
:mod:`cxr_det.formats.chexpert_format`, Irvin et al. AAAI 2019 / Stanford ML Group page).

Writes ``<out>/chexpert/CheXpert-v1.0-small/{train.csv, valid.csv, train/..., valid/...}``
with what the real files have: several studies per patient, lateral views (AP/PA blank),
frontal AP and PA, uncertain (-1.0) and blank cells in train.csv, 0/1 only in valid.csv,
``Sex`` Unknown and ``Age`` 0 on some rows. Images are plain synthetic chests (no lesions
yet: learnable labels come later); deterministic in ``seed``.
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
from cxr_det.synthetic.render import render_image, to_uint8

__all__ = ["make_chexpert"]

# Probabilities of a train.csv observation cell: positive, negative, uncertain, blank.
_CELL_P = (0.15, 0.2, 0.1, 0.55)
_CELL_TEXT = ("1.0", "0.0", "-1.0", "")


def _cells(rng, valid):
    """The 14 observation cells of one row (text as written in the CSV)."""
    if valid:
        return ["1.0" if v else "0.0" for v in rng.random(len(CHEXPERT_OBSERVATIONS)) < 0.2]
    return [_CELL_TEXT[i] for i in rng.choice(4, size=len(CHEXPERT_OBSERVATIONS), p=_CELL_P)]


def make_chexpert(out, n_patients, seed, size=64, n_valid_patients=None) -> dict:
    """Write a synthetic CheXpert-v1.0-small under the dataset root ``out``.

    Args:
        out: dataset root; ``out/chexpert/CheXpert-v1.0-small`` is (re)written (refused if it
            exists and was not written by the generator).
        n_patients: patients of train.csv (>= 1), numbered patient00001.. ; each has 1-3
            studies of 1-2 views (view1 frontal, view2 lateral when present).
        seed: int; same seed, same files.
        size: nominal image side in pixels.
        n_valid_patients: patients of valid.csv (default max(1, n_patients // 5)), numbered
            after the training patients, one study each.

    Returns:
        summary dict: ``folder``, ``train_rows``, ``valid_rows``, ``patients``, ``files``,
        ``uncertain_cells``, ``blank_cells``, ``lateral``, ``sex_unknown``, ``age_zero``.
    """
    n = int(n_patients)
    if n < 1:
        raise ValueError(f"make_chexpert needs at least 1 patient, got {n}")
    n_valid = max(1, n // 5) if n_valid_patients is None else int(n_valid_patients)
    folder = CHEXPERT_FOLDERS[0]
    writer = DatasetWriter(Path(out))
    writer.claim(CHEXPERT_DIR)
    rng = np.random.default_rng([int(seed), 12])
    summary = {"folder": folder, "patients": n + n_valid, "uncertain_cells": 0, "blank_cells": 0,
               "lateral": 0, "sex_unknown": 0, "age_zero": 0}
    tables = {"train": [], "valid": []}
    for index in range(n + n_valid):
        part = "train" if index < n else "valid"
        patient = index + 1
        sex = str(rng.choice(["Male", "Female", "Unknown"], p=[0.45, 0.45, 0.1]))
        age = int(rng.integers(18, 90)) if rng.random() > 0.08 else 0
        # The first patients carry the rare cases for sure, so small sets have them too.
        if index == 0:
            sex = "Unknown"
        if index == 1:
            age = 0
        n_studies = 1 if part == "valid" else int(rng.integers(1, 4))
        for study in range(1, n_studies + 1):
            cells = _cells(rng, part == "valid")
            with_lateral = rng.random() < 0.4 or index == 0
            views = [("frontal", str(rng.choice(["AP", "PA"])))] + ([("lateral", "")] if with_lateral else [])
            for view, (orientation, ap_pa) in enumerate(views, start=1):
                path = CHEXPERT_IMAGE_PATH.format(folder=folder, part=part, patient=patient, study=study,
                                                  view=view, orientation=orientation)
                img, _, _ = render_image(rng, size=size)
                writer.jpg(f"{CHEXPERT_DIR}/{path}", to_uint8(img), quality=90)
                tables[part].append([path, sex, str(age), orientation.capitalize(), ap_pa] + cells)
                summary["lateral"] += orientation == "lateral"
                summary["sex_unknown"] += sex == "Unknown"
                summary["age_zero"] += age == 0
                summary["uncertain_cells"] += cells.count("-1.0")
                summary["blank_cells"] += cells.count("")
    writer.csv(f"{CHEXPERT_DIR}/{folder}/{CHEXPERT_TRAIN_CSV}", CHEXPERT_COLUMNS, tables["train"])
    writer.csv(f"{CHEXPERT_DIR}/{folder}/{CHEXPERT_VALID_CSV}", CHEXPERT_COLUMNS, tables["valid"])
    summary.update(train_rows=len(tables["train"]), valid_rows=len(tables["valid"]), files=writer.files)
    return summary
