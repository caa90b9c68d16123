"""Data sections of ``tools/benchmark.py``: how fast the detection train loader feeds the
VinDr RetinaNet from full-size DICOMs and from the PNG cache, and how fast
``tools/prepare_vindr.py`` builds that cache.

The images are synthetic VinDr-CXR radiographs (:func:`cxr_det.synthetic.make_vindr`,
PhysioNet layout, about 3,000 px a side; BitsStored 12, 14 or 16 as the writer draws them,
16 bits allocated) in two copies: as written (Explicit VR Little Endian, uncompressed) and
re-encoded as JPEG 2000 lossless by the encoder that
:data:`cxr_det.synthetic.dicom_writer.WRITABLE_TRANSFER_SYNTAXES` names for it
(pylibjpeg-openjpeg). The PNG cache is :func:`cxr_det.data.datasets.vindr_cache.build_png_cache`
(the engine of ``tools/prepare_vindr.py``), longest side 1024 px.

The loader is detectron2's ``build_detection_train_loader`` with
:class:`cxr_det.data.mapper.CXRDatasetMapper` built from the VinDr RetinaNet config, as the
Trainer builds it, iterated on its own (batch 1, as the config); the model's images/s is a
training step (forward, backward, SGD step) of the same config's RetinaNet on batches from
that loader, so both see the same input sizes. The first batch of every loader (worker
start-up, first decode) is not timed. Files are read from the page cache (they were just
written): disk reads are not measured.
"""
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import pydicom
from pydicom.uid import JPEG2000Lossless
from tqdm import tqdm

import cxr_det  # noqa: F401  (detectron2 compatibility fixes before detectron2 is imported)
from detectron2.data import build_detection_train_loader

from cxr_det.data import dicom as dicom_module
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.data.datasets.vindr_cache import build_png_cache
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.engine.model_analysis import analysis_config
from cxr_det.formats.vindr_format import VINDR_DICOM_SUFFIX, VINDR_DIR
from cxr_det.synthetic import make_vindr
from cxr_det.synthetic.dicom_writer import WRITABLE_TRANSFER_SYNTAXES

from benchmarks.perf_common import ROOT, Section, median
from benchmarks.perf_models import TimingModel

__all__ = ["VINDR_CONFIG", "CACHE_SIZE", "LOADER_TARGET", "synthetic_vindr", "loader_throughput", "first_batches",
           "run_data", "run_prepare"]

logger = logging.getLogger(__name__)

VINDR_CONFIG = "configs/VinDr/retinanet_R_50_FPN_14cls.yaml"
CACHE_SIZE = 1024  # longest side of the PNG cache, pixels
LOADER_TARGET = 3.0  # loader images/s >= 3x the model's: the target with the cache


def _transcode(source: Path, target: Path, syntax=JPEG2000Lossless):
    """Re-encode one DICOM's pixel data in ``syntax`` with the encoder the synthetic writer uses for it."""
    ds = pydicom.dcmread(str(source))
    ds.compress(syntax, encoding_plugin=WRITABLE_TRANSFER_SYNTAXES[syntax])
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(target), enforce_file_format=True)


def synthetic_vindr(work: Path, images: int, size: int, seed: int = 0):
    """``{"uncompressed": root, "jpeg2000": root}``: two dataset roots of the same synthetic
    VinDr-CXR images (:func:`cxr_det.synthetic.make_vindr`, PhysioNet layout, ``size`` px),
    the second with every DICOM re-encoded as JPEG 2000 lossless. Made under ``work`` once
    and reused while ``images``, ``size`` and ``seed`` match."""
    key = {"images": int(images), "size": int(size), "seed": int(seed)}
    base = work / f"vindr_{size}px_{images}"
    roots = {"uncompressed": base / "uncompressed", "jpeg2000": base / "jpeg2000"}
    marker = base / "made.json"
    if marker.is_file() and json.loads(marker.read_text()) == key:
        return roots
    shutil.rmtree(base, ignore_errors=True)
    print(f"  making {images} synthetic VinDr-CXR DICOMs of ~{size} px in {base} ...", flush=True)
    make_vindr(roots["uncompressed"], images, seed, size=size, layout="physionet")
    src = roots["uncompressed"] / VINDR_DIR
    shutil.copytree(src, roots["jpeg2000"] / VINDR_DIR, ignore=shutil.ignore_patterns(f"*{VINDR_DICOM_SUFFIX}"))
    for path in tqdm(sorted(src.glob(f"*/*{VINDR_DICOM_SUFFIX}")), desc="JPEG 2000 copies"):
        _transcode(path, roots["jpeg2000"] / VINDR_DIR / path.relative_to(src))
    marker.write_text(json.dumps(key))
    return roots


def _bits_stored(root: Path):
    """{BitsStored: number of DICOMs} under a VinDr root (headers only)."""
    counts = {}
    for path in (root / VINDR_DIR).glob(f"*/*{VINDR_DICOM_SUFFIX}"):
        bits = int(pydicom.dcmread(str(path), stop_before_pixels=True).BitsStored)
        counts[bits] = counts.get(bits, 0) + 1
    return dict(sorted(counts.items()))


def loader_throughput(cfg, records, workers: int, images: int):
    """Images/s of detectron2's train loader with the config's :class:`CXRDatasetMapper` over
    ``records`` (batch 1, ``workers`` processes): the time between the arrivals of two
    batches ``images`` apart (rounded up to a multiple of ``workers``), the first of them
    once the start-up is over and the batches the workers made meanwhile (PyTorch's
    prefetch, 2 per worker) are consumed. Returns images/s."""
    loader = build_detection_train_loader(
        records, mapper=CXRDatasetMapper(cfg, is_train=True), total_batch_size=1, num_workers=workers,
        aspect_ratio_grouping=False,
    )
    if workers:
        images = -(-images // workers) * workers
    stream = iter(loader)
    for _ in range(2 * workers + 1):
        next(stream)
    start = time.perf_counter()
    for _ in range(images):
        next(stream)
    rate = images / (time.perf_counter() - start)
    del stream, loader  # stops the worker processes
    return rate


def first_batches(cfg, records, count: int):
    """The first ``count`` batches (batch 1) of the config's train loader over ``records``
    (no worker processes): model inputs of the sizes training sees."""
    loader = build_detection_train_loader(
        records, mapper=CXRDatasetMapper(cfg, is_train=True), total_batch_size=1, num_workers=0,
        aspect_ratio_grouping=False,
    )
    stream = iter(loader)
    return [next(stream) for _ in range(count)]


def run_data(settings, work: Path, device: str, amp: bool) -> Section:
    """The data-loading section (see the module docstring); ``settings``: the mode's
    ``data`` settings of :mod:`benchmarks.performance`."""
    s = settings
    roots = synthetic_vindr(work, s["images"], s["size"])
    cache = work / f"vindr_{s['size']}px_{s['images']}" / f"png_{CACHE_SIZE}"
    build_png_cache(roots["uncompressed"], cache, CACHE_SIZE, workers=0)
    # The configured architecture (frozen-BatchNorm R50); its MODEL.WEIGHTS are never loaded.
    opts = ["MODEL.DEVICE", device, "SEED", "0"] + list(s.get("input_opts", []))
    cfg = analysis_config(str(ROOT / VINDR_CONFIG), opts)
    records = {
        "PNG cache": load_vindr(roots["uncompressed"], "all", image_cache=str(cache)),
        "DICOM uncompressed": load_vindr(roots["uncompressed"], "all"),
        "DICOM JPEG 2000": load_vindr(roots["jpeg2000"], "all"),
    }
    counts = {"PNG cache": s["png_batches"], "DICOM uncompressed": s["dicom_batches"],
              "DICOM JPEG 2000": s["j2k_batches"]}
    rates = {}
    for source, recs in records.items():
        for workers in (0, 2):
            print(f"  loader: {source}, {workers} workers ...", flush=True)
            rates[(source, workers)] = loader_throughput(cfg, recs, workers, counts[source])
    print("  loader: DICOM uncompressed, display computed per pixel (as before the lookup table) ...", flush=True)
    limit = dicom_module.DISPLAY_LUT_MAX_ENTRIES
    dicom_module.DISPLAY_LUT_MAX_ENTRIES = 0
    try:
        per_pixel = loader_throughput(cfg, records["DICOM uncompressed"], 0, counts["DICOM uncompressed"])
    finally:
        dicom_module.DISPLAY_LUT_MAX_ENTRIES = limit

    print(f"  model: {VINDR_CONFIG} training steps on {device} ...", flush=True)
    inputs = first_batches(cfg, records["PNG cache"], s["model_steps"] + 1)
    model = TimingModel(cfg, device, amp)
    step_seconds = model.train_seconds(inputs[0], inputs[1:])
    model_rate = 1.0 / median(step_seconds)
    shapes = sorted({tuple(b[0]["image"].shape[1:]) for b in inputs})

    rows = []
    for (source, workers), rate in rates.items():
        ratio = rate / model_rate
        target = ("yes" if ratio >= LOADER_TARGET else "NO") if source == "PNG cache" else ""
        rows.append([source, workers, rate, 1000.0 / rate * max(workers, 1), model_rate, ratio, target])
    rows.append(["DICOM uncompressed, display per pixel (earlier decoding)", 0, per_pixel, 1000.0 / per_pixel,
                 model_rate, per_pixel / model_rate, ""])
    headers = ["source", "workers", "loader images/s", "ms / image / worker", "model images/s (train step)",
               "loader / model", f">= {LOADER_TARGET:g}x"]
    png2, dicom2, j2k2 = (rates[(k, 2)] for k in ("PNG cache", "DICOM uncompressed", "DICOM JPEG 2000"))
    notes = [
        f"{s['images']} synthetic VinDr-CXR images of ~{s['size']} px "
        f"(BitsStored: images {_bits_stored(roots['uncompressed'])}); "
        f"PNG cache longest side {CACHE_SIZE} px; loader timed over {counts['PNG cache']} (PNG), "
        f"{counts['DICOM uncompressed']} (DICOM) and {counts['DICOM JPEG 2000']} (JPEG 2000) images after the start-up",
        f"model: {VINDR_CONFIG}, configured R50-FPN (FrozenBN) with random weights, batch 1, on {device}"
        f"{' with AMP' if amp else ''}; {len(step_seconds)} timed steps after 1 untimed, input sizes {shapes}",
        f"with 2 workers, the uncompressed DICOMs feed {dicom2 / png2:.2f}x and the JPEG 2000 ones {j2k2 / png2:.2f}x "
        f"the images/s of the PNG cache; to feed a model at R images/s, a loader needs about "
        f"R x (ms / image / worker) / 1000 worker processes",
    ]
    data = {"rates": {f"{k[0]}|{k[1]}": v for k, v in rates.items()}, "per_pixel_dicom_0_workers": per_pixel,
            "model_images_per_s": model_rate, "model_step_seconds": step_seconds, "input_shapes": shapes,
            "images": s["images"], "size": s["size"], "target": LOADER_TARGET}
    return Section("data", "Data loading: train loader vs the VinDr RetinaNet", headers, rows, notes, data)


def _linked_root(src_root: Path, dst_root: Path, n: int) -> Path:
    """A VinDr root whose ``train`` folder holds ``n`` links to the DICOMs of ``src_root``,
    taken in turn (each file under several names when ``n`` exceeds their number)."""
    shutil.rmtree(dst_root, ignore_errors=True)
    folder = dst_root / VINDR_DIR / "train"
    folder.mkdir(parents=True)
    files = sorted((src_root / VINDR_DIR).glob(f"*/*{VINDR_DICOM_SUFFIX}"))
    for i in range(n):
        (folder / f"{i:05d}{VINDR_DICOM_SUFFIX}").symlink_to(files[i % len(files)].resolve())
    return dst_root


class _PNGCounter(threading.Thread):
    """Counts the finished PNGs in a folder every ``period`` seconds (``samples``: (time, count));
    the cache writes ``<id>.partial.png`` first and renames it, so a ``.png`` without
    ``.partial`` is complete."""

    def __init__(self, folder: Path, period: float = 0.05):
        super().__init__(daemon=True)
        self.folder, self.period, self.samples, self.done = folder, period, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                count = sum(1 for e in os.scandir(self.folder) if e.name.endswith(".png") and ".partial" not in e.name)
            except FileNotFoundError:
                count = 0
            self.samples.append((time.perf_counter(), count))
            self.done.wait(self.period)


def _conversion_timing(root: Path, output: Path, workers: int, images: int) -> dict:
    """Wall seconds of :func:`build_png_cache` over ``root`` into ``output``, the seconds to the
    first finished PNG (start-up), and the steady rate: images/s between the moments 10% and
    90% of the PNGs were finished."""
    shutil.rmtree(output, ignore_errors=True)
    counter = _PNGCounter(output / "train")
    start = time.perf_counter()
    counter.start()
    try:
        summary = build_png_cache(root, output, CACHE_SIZE, splits=["train"], workers=workers, overwrite=True)
    finally:
        counter.done.set()
        counter.join()
    seconds = time.perf_counter() - start
    if summary["failed"]:
        raise RuntimeError(f"build_png_cache failed on {summary['failed']} image(s): {summary['failures'][:3]}")

    def reached(count):
        return next((t for t, c in counter.samples if c >= count), start + seconds)

    low, high = int(0.1 * images), int(0.9 * images)
    span = reached(high) - reached(low)
    return {"processes": max(workers, 1), "images": images, "seconds": seconds,
            "startup_seconds": reached(1) - start,
            "steady_images_per_s": (high - low) / span if span > 0 else float("nan")}


def run_prepare(settings, work: Path) -> Section:
    """``tools/prepare_vindr.py`` throughput (:func:`build_png_cache`): images/s with 1 and 2
    processes, converting the uncompressed synthetic DICOMs of the data section linked under
    ``conversions`` names. The steady rate is read from the PNGs appearing (between 10% and
    90% done), so the process start-up (spawned workers import the package and load the
    decoders), which a real 15,000-image run amortises, is left out; it is shown apart."""
    s = settings
    roots = synthetic_vindr(work, s["images"], s["size"])
    n = s["conversions"]
    linked = _linked_root(roots["uncompressed"], work / "prepare" / "dicoms", n)
    runs = [("1, in this process (--workers 0 or 1)", 0, None), ("1, one OpenCV thread (as a worker)", 0, 1),
            ("2 (--workers 2)", 2, None)]
    rows, data = [], {}
    threads = cv2.getNumThreads()
    for label, workers, cv_threads in runs:
        print(f"  prepare_vindr: {label} ...", flush=True)
        cv2.setNumThreads(threads if cv_threads is None else cv_threads)
        try:
            data[label] = _conversion_timing(linked, work / "prepare" / "png", workers, n)
        finally:
            cv2.setNumThreads(threads)
    shutil.rmtree(work / "prepare", ignore_errors=True)  # only the timings are kept
    base = data[runs[1][0]]["steady_images_per_s"]
    for label, d in data.items():
        rate = d["steady_images_per_s"]
        rows.append([label, n, d["seconds"], n / d["seconds"], d["startup_seconds"], rate, rate / d["processes"],
                     rate / base])
    headers = ["processes", "images", "wall s", "images/s (wall)", "s to the first PNG", "images/s (steady)",
               "images/s per process", "vs one process, one thread"]
    notes = [f"{s['images']} uncompressed synthetic DICOMs of ~{s['size']} px under {n} names "
             f"-> PNG, longest side {CACHE_SIZE} px; steady = images/s between 10% and 90% of the PNGs written",
             f"in this process OpenCV uses {threads} threads (resize, PNG encoding); the tool's worker processes use 1"]
    return Section("prepare", "tools/prepare_vindr.py (build_png_cache) throughput", headers, rows, notes, data)
