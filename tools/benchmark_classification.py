#!/usr/bin/env python
"""Benchmark: does clinical data help a classifier? Image-only vs clinical twin on synthetic CheXpert.

    tools/benchmark_classification.py [--root datasets/synthetic_chexpert] [--patients 600] [--size 64]
        [--iters 600] [--split chexpert_valid] [--bootstrap 1000] [--output output/benchmark_classification]

Generates the synthetic CheXpert data if the root has none, trains both twins of the
classification demo with the same seed and schedule through tools/train_net.py, and prints
one table: per label, ROC AUC with its 95% bootstrap interval for each twin and the clinical
gain with its paired-bootstrap interval and p-value (Atelectasis, starred, depends on age
only in the synthetic data); the macro AUC over the labels the image shows; seconds per
training iteration and their ratio (as the training runs logged them, and measured side by side,
the twins' steps interleaved in one process); then whether the issue's targets are met. Also writes
benchmark_classification.json. ``--report-only`` re-reads the two runs in --output. A
benchmark, not a test: it takes minutes.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.classification_benchmark import run_benchmark  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="datasets/synthetic_chexpert", help="synthetic CheXpert root (made if absent)")
    parser.add_argument("--patients", type=int, default=600, help="training patients to generate when --root is absent")
    parser.add_argument("--size", type=int, default=64, help="image side of the generated data (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=0, help="training iterations (0: the configs' SOLVER.MAX_ITER)")
    parser.add_argument("--split", default="chexpert_valid", help="dataset to evaluate on")
    parser.add_argument("--output", default="output/benchmark_classification")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples of the evaluation images for the 95%% intervals")
    parser.add_argument("--timing-steps", type=int, default=60,
                        help="training steps per twin timed side by side (interleaved) for the time ratio")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the table from the two runs already in --output")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the benchmark (:func:`benchmarks.classification_benchmark.run_benchmark`); returns its summary."""
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
