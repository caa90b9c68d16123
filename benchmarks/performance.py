"""``tools/benchmark.py``'s measurement: where a run's time and memory go, section by section,
each printed as one table with the ratios measured side by side in the same run, and all of
it written to one JSON file.

Sections (``--sections``), each in its module:

- ``data`` (:mod:`benchmarks.perf_data`): images/s of the detection train loader on ~3,000 px
  synthetic VinDr-CXR DICOMs (uncompressed, JPEG 2000) and on the PNG cache, 0 and 2
  workers, against the VinDr RetinaNet's training images/s at the same input size; the
  target is loader >= 3x model with the cache;
- ``prepare`` (:mod:`benchmarks.perf_data`): ``tools/prepare_vindr.py`` images/s per process,
  1 and 2 processes;
- ``train`` (:mod:`benchmarks.perf_models`): training s/iter and inference ms/image of the
  demo, REFLACX and VinDr configs, image-only and clinical (fusion overhead), FLOPs per image
  and the share of the machine's matmul peak;
- ``eval`` (:mod:`benchmarks.perf_eval`): evaluation seconds for N images x 14 classes x 100
  detections per protocol, faster-coco-eval vs pycocotools, at N/2 and N images;
- ``registrars`` (:mod:`benchmarks.perf_registrars`): dataset loaders on full-size tables;
- ``memory`` (:mod:`benchmarks.perf_memory`): RSS growth of a training run over 1,000
  iterations.

:data:`MODES` holds the sizes of ``--quick`` and of the full run (what each measured is
printed under its table).
"""
import os
import time
import traceback
from pathlib import Path

import torch
from tabulate import tabulate

from cxr_det.utils.atomic import atomic_write_json

from benchmarks.perf_common import ROOT, Section, machine_info

__all__ = ["SECTIONS", "MODES", "format_value", "print_section", "run_benchmark"]

SECTIONS = ("data", "prepare", "train", "eval", "registrars", "memory")

MODES = {
    "quick": {
        "data": {"images": 4, "size": 3000, "png_batches": 16, "dicom_batches": 6, "j2k_batches": 2, "model_steps": 2,
                 "input_opts": ["INPUT.MIN_SIZE_TRAIN", "(512,)", "INPUT.MAX_SIZE_TRAIN", "853"]},
        "prepare": {"images": 4, "size": 3000, "conversions": 120},
        "train": {"size": {"demo": 320, "REFLACX": 320, "VinDr": 320}, "batch": {"demo": 2, "REFLACX": 1, "VinDr": 1},
                  "steps": 3, "infer_images": 3},
        "eval": {"images": 1500, "pycocotools": True},
        "registrars": {"scale": 0.2},
        "memory": {"warmup": 100, "iters": 300, "eval_period": 100, "size": 128, "batch": 2, "images": 60},
    },
    "full": {
        "data": {"images": 12, "size": 3000, "png_batches": 60, "dicom_batches": 24, "j2k_batches": 6,
                 "model_steps": 3, "input_opts": []},
        "prepare": {"images": 12, "size": 3000, "conversions": 400},
        "train": {"size": {"demo": 320, "REFLACX": 512, "VinDr": 512}, "batch": {"demo": 4, "REFLACX": 1, "VinDr": 1},
                  "steps": 5, "infer_images": 5},
        "eval": {"images": 3000, "pycocotools": True},
        "registrars": {"scale": 1.0},
        "memory": {"warmup": 250, "iters": 1000, "eval_period": 250, "size": 128, "batch": 2, "images": 60},
    },
}


def format_value(value):
    """A table cell: floats with 3 significant digits (no exponent below 1e6), integers with
    thousands separators, others as given."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        magnitude = abs(value)
        if magnitude >= 100 or value == 0:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return value


def print_section(section: Section) -> None:
    """Print a section's title, its table (GitHub markdown) and its notes."""
    print(f"\n### {section.title}\n")
    rows = [[format_value(v) for v in row] for row in section.rows]
    print(tabulate(rows, headers=section.headers, tablefmt="github", disable_numparse=True))
    print()
    for note in section.notes:
        print(f"- {note}")
    print(flush=True)


def _run_section(name, settings, args, work):
    if name == "data":
        from benchmarks.perf_data import run_data
        return run_data(settings, work, args.device, args.amp)
    if name == "prepare":
        from benchmarks.perf_data import run_prepare
        return run_prepare(settings, work)
    if name == "train":
        from benchmarks.perf_models import run_models
        return run_models(settings, args.device, args.amp)
    if name == "eval":
        from benchmarks.perf_eval import run_eval
        return run_eval(settings)
    if name == "registrars":
        from benchmarks.perf_registrars import run_registrars
        return run_registrars(settings, work)
    if name == "memory":
        from benchmarks.perf_memory import run_memory
        return run_memory(settings, work)
    raise ValueError(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")


def run_benchmark(args) -> int:
    """Run the sections ``args.sections`` (tools/benchmark.py's parsed arguments: quick,
    sections, device, amp, threads, work, json), print one table each and write the JSON. A section
    that fails is reported (its traceback printed, its error in the JSON) and the others
    still run. Returns the exit status: 0, or 1 when a section failed."""
    mode = "quick" if args.quick else "full"
    if getattr(args, "threads", 0):
        torch.set_num_threads(int(args.threads))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info(args.device)
    print(f"tools/benchmark.py, {mode} run, {info['date']}, commit {info['commit']}")
    print(f"machine: {info['cpu']}, {info['cpu_cores']} cores, torch {info['torch']} with {info['torch_threads']} "
          f"threads; device {info.get('gpu', args.device)}{' (AMP)' if args.amp else ''}", flush=True)
    report = {"mode": mode, "machine": info, "settings": {n: MODES[mode][n] for n in args.sections}, "sections": {}}
    failed = False
    started = time.perf_counter()
    for name in args.sections:
        print(f"\n[{name}] ...", flush=True)
        t0, load = time.perf_counter(), os.getloadavg()
        try:
            section = _run_section(name, MODES[mode][name], args, work)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the others' figures
            traceback.print_exc()
            print(f"[{name}] FAILED: {type(e).__name__}: {e}", flush=True)
            report["sections"][name] = {"error": f"{type(e).__name__}: {e}"}
            failed = True
            continue
        seconds = time.perf_counter() - t0
        section.notes.append(f"section time {seconds:.0f} s; machine load (1-minute average) {load[0]:.1f} at its "
                             f"start, {os.getloadavg()[0]:.1f} at its end, on {os.cpu_count()} cores")
        print_section(section)
        report["sections"][name] = {"title": section.title, "headers": section.headers, "rows": section.rows,
                                    "notes": section.notes, "data": section.data, "seconds": seconds}
    report["seconds"] = time.perf_counter() - started
    atomic_write_json(args.json, report, indent=1, default=str)
    print(f"total {report['seconds'] / 60:.1f} min; JSON: {args.json}")
    return 1 if failed else 0


DEFAULT_WORK = ROOT / "output" / "benchmark" / "work"
DEFAULT_JSON = ROOT / "output" / "benchmark" / "benchmark.json"
