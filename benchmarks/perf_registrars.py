"""Registrar section of ``tools/benchmark.py``: how long the dataset loaders take on tables of
the real datasets' full size, generated in their real layouts.

- REFLACX: :func:`cxr_det.synthetic.make_reflacx` with 2,168 images, which gives REFLACX's
  3,032 readings (phases 1 and 2 read 5 times); 64 px images (the loader checks that each
  image file exists, never reads it).
- VinDr-CXR, Kaggle layout: a ``train.csv`` of 67,914 rows over 15,000 images (3 readers
  each; 10,606 images all "No finding", the others 1 to many boxes per reader, as the
  competition's file), written with the synthetic writers' table code
  (:class:`cxr_det.synthetic.dataset_writer.DatasetWriter`), and one tiny DICOM per image
  whose Rows/Columns say 3,000 x 2,500 (the loader reads headers only); the same images
  as a PNG cache (``scales.csv`` and tiny PNGs).
- CheXpert: :func:`benchmarks.chexpert_load.write_train_csv`, 224,316 rows, loaded without
  file checks (no images).

``scale`` < 1 (the ``--quick`` mode) shrinks every table by that factor.
"""
import json
import logging
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxr_det.data.datasets.chexpert import load_chexpert
from cxr_det.data.datasets.reflacx import load_reflacx
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.data.datasets.vindr_cache import SCALES_COLUMNS
from cxr_det.formats import NO_FINDING
from cxr_det.formats.vindr_format import (
    VINDR_DICOM_SUFFIX,
    VINDR_DIR,
    VINDR_KAGGLE_ANNOTATIONS,
    VINDR_KAGGLE_CLASSES,
    VINDR_KAGGLE_COLUMNS,
    VINDR_NO_FINDING_ID,
)
from cxr_det.synthetic import make_reflacx
from cxr_det.synthetic.dataset_writer import DatasetWriter
from cxr_det.synthetic.dicom_writer import write_dicom

from benchmarks.chexpert_load import FULL_ROWS as CHEXPERT_ROWS
from benchmarks.chexpert_load import write_train_csv
from benchmarks.perf_common import Section

__all__ = ["REFLACX_IMAGES", "VINDR_ROWS", "VINDR_IMAGES", "VINDR_NORMAL", "write_vindr_kaggle", "run_registrars"]

logger = logging.getLogger(__name__)

REFLACX_IMAGES = 2168  # -> 3,032 readings with make_reflacx's phase mix
VINDR_ROWS, VINDR_IMAGES, VINDR_NORMAL = 67_914, 15_000, 10_606  # the Kaggle train.csv
VINDR_HEIGHT, VINDR_WIDTH = 3000, 2500


def _made(folder: Path, key: dict) -> bool:
    """Whether ``folder`` was made with the settings ``key`` (its ``made.json`` agrees on each)."""
    marker = folder / "made.json"
    if not marker.is_file():
        return False
    made = json.loads(marker.read_text())
    return all(made.get(k) == v for k, v in key.items())


def _mark(folder: Path, key: dict):
    (folder / "made.json").write_text(json.dumps(key))


def write_vindr_kaggle(root: Path, rows=VINDR_ROWS, images=VINDR_IMAGES, normal=VINDR_NORMAL, seed=0):
    """Write the Kaggle-layout VinDr-CXR tables and files described in the module docstring
    under ``root``: ``vindr-cxr/train.csv``, ``vindr-cxr/train/<id>.dicom`` and the PNG cache
    ``vindr-cxr/png_cache``. Returns the number of rows written (``rows``)."""
    rng = np.random.default_rng(seed)
    readers = np.array([f"R{i}" for i in range(1, 18)])
    ids = [f"{v:032x}" for v in rng.integers(0, 2**62, size=images)]
    abnormal = images - normal
    extra = rows - 3 * images  # rows beyond one per reader and image, all on abnormal images
    per_slot = 1 + rng.multinomial(extra, np.full(3 * abnormal, 1.0 / (3 * abnormal)))
    table = []
    for i, image_id in enumerate(ids):
        who = rng.choice(readers, size=3, replace=False)
        for r, rad in enumerate(who):
            if i < normal:
                table.append([image_id, NO_FINDING, VINDR_NO_FINDING_ID, rad, "", "", "", ""])
                continue
            for _ in range(per_slot[3 * (i - normal) + r]):
                cls = int(rng.integers(0, len(VINDR_KAGGLE_CLASSES)))
                x0, y0 = rng.uniform(0, VINDR_WIDTH * 0.8), rng.uniform(0, VINDR_HEIGHT * 0.8)
                x1, y1 = x0 + rng.uniform(20, VINDR_WIDTH * 0.2), y0 + rng.uniform(20, VINDR_HEIGHT * 0.2)
                table.append([image_id, VINDR_KAGGLE_CLASSES[cls], cls, rad] + [f"{v:.1f}" for v in (x0, y0, x1, y1)])
    writer = DatasetWriter(root)
    writer.claim(VINDR_DIR)
    writer.csv(f"{VINDR_DIR}/{VINDR_KAGGLE_ANNOTATIONS['train']}", VINDR_KAGGLE_COLUMNS, table)
    template = write_dicom(root / "template.dicom", np.zeros((4, 4), np.uint16), bits_stored=12,
                           Rows=VINDR_HEIGHT, Columns=VINDR_WIDTH)
    folder, cache = root / VINDR_DIR / "train", root / VINDR_DIR / "png_cache" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    png = root / "template.png"
    cv2.imwrite(str(png), np.zeros((4, 4), np.uint8))
    for image_id in ids:
        shutil.copyfile(template, folder / f"{image_id}{VINDR_DICOM_SUFFIX}")
        shutil.copyfile(png, cache / f"{image_id}.png")
    scale = 1024 / VINDR_HEIGHT
    scales = pd.DataFrame({"image_id": ids, "folder": "train", "original_height": VINDR_HEIGHT,
                           "original_width": VINDR_WIDTH, "height": 1024, "width": round(VINDR_WIDTH * scale),
                           "scale": scale})
    scales[list(SCALES_COLUMNS)].to_csv(root / VINDR_DIR / "png_cache" / "scales.csv", index=False)
    return len(table)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_registrars(settings, work: Path) -> Section:
    """The registrar section; ``settings``: the mode's ``registrars`` settings of
    :mod:`benchmarks.performance` (``scale``: 1 for the real sizes)."""
    scale = float(settings["scale"])
    rows, data = [], []

    def add(dataset, table_rows, options, seconds, records):
        rows.append([dataset, table_rows, len(records), options, seconds, table_rows / seconds])
        data.append({"dataset": dataset, "rows": table_rows, "records": len(records), "options": options,
                     "seconds": seconds})

    reflacx_images = max(5, int(round(REFLACX_IMAGES * scale)))
    root = work / f"registrars/reflacx_{reflacx_images}"
    key = {"images": reflacx_images}
    if not _made(root, key):
        print(f"  making synthetic REFLACX ({reflacx_images} images) ...", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        summary = make_reflacx(root, reflacx_images, 0, size=64)
        _mark(root, dict(key, readings=summary["readings"]))
    readings = json.loads((root / "made.json").read_text())["readings"]
    for readers in ("all_readers", "mean_ellipse"):
        print(f"  load_reflacx(all, {readers}) ...", flush=True)
        seconds, records = _timed(lambda: load_reflacx(root, "all", readers=readers, log_certainty=False))
        add("REFLACX (readings)", readings, f"split all, readers={readers}", seconds, records)

    vindr_rows = int(round(VINDR_ROWS * scale))
    vindr_images, vindr_normal = int(round(VINDR_IMAGES * scale)), int(round(VINDR_NORMAL * scale))
    root = work / f"registrars/vindr_{vindr_rows}"
    key = {"rows": vindr_rows, "images": vindr_images}
    if not _made(root, key):
        print(f"  writing a VinDr-CXR Kaggle train.csv ({vindr_rows} rows, {vindr_images} DICOM headers) ...",
              flush=True)
        shutil.rmtree(root, ignore_errors=True)
        write_vindr_kaggle(root, vindr_rows, vindr_images, vindr_normal)
        _mark(root, key)
    for split, readers, cache in (("train", "all_readers", ""), ("all", "all_readers", ""),
                                  ("all", "weighted_boxes_fusion", ""), ("all", "all_readers", "png_cache")):
        what = f"split {split}, readers={readers}" + (", PNG cache" if cache else ", DICOM headers")
        print(f"  load_vindr({what}) ...", flush=True)
        seconds, records = _timed(lambda: load_vindr(root, split, readers=readers, image_cache=cache))
        add("VinDr-CXR Kaggle train.csv", vindr_rows, what, seconds, records)

    chexpert_rows = int(round(CHEXPERT_ROWS * scale))
    root = work / f"registrars/chexpert_{chexpert_rows}"
    if not _made(root, {"rows": chexpert_rows}):
        print(f"  writing a CheXpert train.csv ({chexpert_rows} rows) ...", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        write_train_csv(root, chexpert_rows)
        _mark(root, {"rows": chexpert_rows})
    print("  load_chexpert(train) ...", flush=True)
    seconds, records = _timed(lambda: load_chexpert(
        root, "train", labels="all14", uncertainty={"Edema": "ones", "default": "ignore"}, views="all",
        val_fraction=0.1, check_files=False))
    add("CheXpert train.csv", chexpert_rows, "train, all14, views=all, check_files=False", seconds, records)

    headers = ["dataset", "table rows", "records", "options", "load s", "rows/s"]
    notes = [f"tables at {scale:g}x the real datasets' sizes (REFLACX 3,032 readings; VinDr-CXR Kaggle 67,914 rows, "
             "15,000 images; CheXpert 224,316 rows); files in the page cache"]
    return Section("registrars", "Dataset loaders on full-size tables", headers, rows, notes,
                   {"scale": scale, "loads": data})
