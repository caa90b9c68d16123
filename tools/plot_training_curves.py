#!/usr/bin/env python
"""Draw a training run's curves from detectron2's metrics.json.

    tools/plot_training_curves.py --metrics output/run/metrics.json --output output/run
    tools/plot_training_curves.py --metrics ... --output ... --metric '*/AP50' --metric 'froc/CPM'

Writes training_losses.png (training losses as lines, validation losses dashed),
training_metrics.png (evaluation metrics, one panel per protocol) and training_lr.png.
"""
import argparse
import logging
import sys

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)
from cxr_det.utils.training_curves import DEFAULT_METRIC_PATTERNS, plot_training_curves


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Draw a training run's curves from detectron2's metrics.json.")
    parser.add_argument("--metrics", required=True, help="metrics.json written by training (OUTPUT_DIR/metrics.json)")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument(
        "--metric", action="append", dest="patterns", metavar="PATTERN",
        help="fnmatch pattern of evaluation metrics to draw, repeatable; default: "
        + " ".join(DEFAULT_METRIC_PATTERNS),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = plot_training_curves(args.metrics, args.output, args.patterns or DEFAULT_METRIC_PATTERNS)
    except FileNotFoundError as e:
        logging.getLogger("cxr_det.tools.plot_training_curves").error(str(e))
        return 2
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
