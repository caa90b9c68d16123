#!/usr/bin/env python
"""Benchmark: does clinical data help? Image-only vs clinical twin on synthetic REFLACX.

    tools/benchmark_fusion.py [--root datasets/synthetic] [--images 480] [--seed 0] [--iters 1200] [--split reflacx_val]

Generates the synthetic data if the root is empty, trains both twins with the same seed
and schedule through tools/train_net.py, evaluates them on the same split, and prints one
table: AP, AP50, per-class AP50 (Consolidation and Pulmonary edema look alike in the
image and differ only in the patient's vitals), seconds per training iteration and the
clinical / image-only time ratio. A last column scores the look-alike pair as one class
("patchy", class-agnostic AP50): it shows how much of a difference is finding the opacity
and how much is naming it. Then it states the clinical gain (clinical - image-only AP50,
overall, on the look-alike pair and per class) with its paired-bootstrap 95% confidence
interval and p-value over the evaluation images (``--bootstrap`` resamples, from the two
runs' saved ``ground_truth_coco.json`` / ``coco_instances_results.json``, so
``--report-only`` needs no retraining). Also writes ``benchmark_fusion.json`` and a bar
chart. A benchmark, not a test: it takes minutes.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fusion_benchmark import LOOK_ALIKE, TWINS, run_benchmark  # noqa: E402,F401
from cxr_det.evaluation.run_comparison import clinical_gain, merged_ap50  # noqa: E402,F401  (the tool's API)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="datasets/synthetic", help="synthetic REFLACX root (made if absent)")
    parser.add_argument("--images", type=int, default=480, help="images to generate when --root is absent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=1200)
    parser.add_argument("--split", default="reflacx_val", help="dataset to evaluate on")
    parser.add_argument("--output", default="output/benchmark_fusion")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="paired bootstrap resamples of the evaluation images for the gain's 95%% CI")
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the table from the two runs already in --output")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the benchmark (:func:`benchmarks.fusion_benchmark.run_benchmark`); returns its summary."""
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
