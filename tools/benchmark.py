#!/usr/bin/env python
"""Where the time and memory of a run go: one table per section, ratios measured side by side.

    tools/benchmark.py                        # the full run (under ~20 min on 2 CPU cores)
    tools/benchmark.py --quick                # smaller sizes, a few minutes
    tools/benchmark.py --sections data,eval --json output/benchmark/data_eval.json
    tools/benchmark.py --device cuda --amp    # on a GPU machine (default: cuda when available)

Sections (``--sections``, comma-separated, in this order by default):

- data: images/s of the detection train loader (detectron2's, with the project's mapper) on
  ~3,000 px synthetic VinDr-CXR DICOMs, uncompressed and JPEG 2000, and on the PNG cache of
  tools/prepare_vindr.py, with 0 and 2 workers, against the VinDr RetinaNet's training
  images/s at the same input size (target with the cache: loader >= 3x model);
- prepare: tools/prepare_vindr.py images/s per process, 1 and 2 processes;
- train: training s/iter and inference ms/image of the demo, REFLACX and VinDr configs,
  image-only and clinical (fusion overhead), fvcore FLOPs per image and the share of this
  machine's matrix-multiply peak achieved;
- eval: seconds to evaluate 3,000 images x 14 classes x 100 detections per protocol,
  faster-coco-eval vs pycocotools, and at 1,500 images (twice the images, twice the time?);
- registrars: dataset loaders on full-size generated tables (REFLACX 3,032 readings, VinDr
  Kaggle train.csv 67,914 rows, CheXpert 224,316 rows);
- memory: RSS of a demo training run over 1,000 iterations after warm-up (growth < 5%).

Generated data are kept under ``--work`` and reused by later runs. Prints the tables
(GitHub markdown, with what each measured under it) and writes them with every raw timing
to ``--json``. Exit status 1 when a section failed (the others still run). A benchmark, not
a test; see benchmarks/performance.py.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.perf_common import default_device  # noqa: E402
from benchmarks.performance import DEFAULT_JSON, DEFAULT_WORK, SECTIONS, run_benchmark  # noqa: E402


def _sections(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown or text!r}; choose from {','.join(SECTIONS)}")
    return [n for n in SECTIONS if n in names]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer iterations (a few minutes)")
    parser.add_argument("--sections", type=_sections, default=list(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default %(default)s)")
    parser.add_argument("--work", default=str(DEFAULT_WORK),
                        help="folder for generated data and runs, reused between runs (default %(default)s)")
    parser.add_argument("--device", default=default_device(), help="device of the model timings (default %(default)s)")
    parser.add_argument("--amp", action="store_true", help="mixed precision in the model timings (CUDA only)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for the run (default: torch's own choice); 1 gives steadier "
                             "CPU figures on a machine whose cores other work shares")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the benchmark (:func:`benchmarks.performance.run_benchmark`); returns the exit status."""
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
