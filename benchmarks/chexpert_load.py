"""How long loading CheXpert's ``train.csv`` takes at full scale (a benchmark, not a test).

Writes a generated ``train.csv`` of 224,316 rows (about 65,240 patients, several studies
each, frontal and lateral views, uncertain and blank cells, Sex Unknown, Age 0) in the
``CheXpert-v1.0-small`` layout to a temporary dataset root, then times
:func:`cxr_det.data.datasets.chexpert.load_chexpert` for the ``train`` split with
``check_files=False`` (no image files are written; checking them costs one ``stat`` per
row on top). Run: ``.venv/bin/python -m benchmarks.chexpert_load [--rows N]``.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_det.data.datasets.chexpert import load_chexpert
from cxr_det.formats.chexpert_format import (
    CHEXPERT_COLUMNS,
    CHEXPERT_DIR,
    CHEXPERT_FOLDERS,
    CHEXPERT_OBSERVATIONS,
    CHEXPERT_TRAIN_CSV,
    CHEXPERT_VALID_CSV,
)

__all__ = ["write_train_csv", "run"]

FULL_ROWS = 224_316
FULL_PATIENTS = 65_240


def write_train_csv(root, rows=FULL_ROWS, seed=0):
    """Write a generated train.csv (and a one-row valid.csv) of ``rows`` rows under ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CHEXPERT_DIR / CHEXPERT_FOLDERS[0]
    folder.mkdir(parents=True, exist_ok=True)
    patients = np.sort(rng.integers(1, max(2, int(rows * FULL_PATIENTS / FULL_ROWS)) + 1, size=rows))
    study = rng.integers(1, 6, size=rows)
    lateral = rng.random(rows) < 0.15
    orientation = np.where(lateral, "lateral", "frontal")
    path = [f"{CHEXPERT_FOLDERS[0]}/train/patient{p:05d}/study{s}/view{1 + int(l)}_{o}.jpg"
            for p, s, l, o in zip(patients, study, lateral, orientation)]
    frame = pd.DataFrame({
        "Path": path,
        "Sex": rng.choice(["Male", "Female", "Unknown"], p=[0.59, 0.409, 0.001], size=rows),
        "Age": np.where(rng.random(rows) < 0.001, 0, rng.integers(18, 91, size=rows)),
        "Frontal/Lateral": np.where(lateral, "Lateral", "Frontal"),
        "AP/PA": np.where(lateral, "", rng.choice(["AP", "PA"], p=[0.8, 0.2], size=rows)),
    })
    for name in CHEXPERT_OBSERVATIONS:
        frame[name] = rng.choice(np.array([1.0, 0.0, -1.0, np.nan]), p=[0.12, 0.1, 0.05, 0.73], size=rows)
    frame = frame[list(CHEXPERT_COLUMNS)]
    frame.to_csv(folder / CHEXPERT_TRAIN_CSV, index=False)
    frame.head(1).to_csv(folder / CHEXPERT_VALID_CSV, index=False)
    return folder / CHEXPERT_TRAIN_CSV


def run(rows=FULL_ROWS):
    """Print the seconds to write and to load; returns the load seconds."""
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        write_train_csv(root, rows)
        t1 = time.perf_counter()
        records = load_chexpert(root, "train", labels="all14", uncertainty={"Edema": "ones", "default": "ignore"},
                                views="all", val_fraction=0.1, check_files=False)
        t2 = time.perf_counter()
    print(f"train.csv rows: {rows}; written in {t1 - t0:.1f} s")
    print(f"load_chexpert(train, all14, views=all, check_files=False): {len(records)} records in {t2 - t1:.2f} s")
    return t2 - t1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    run(parser.parse_args().rows)


if __name__ == "__main__":
    main()
