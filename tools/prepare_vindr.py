#!/usr/bin/env python
"""Build the VinDr-CXR PNG cache: display-correct 8-bit PNGs, longer side <= --max-size.

Writes <output>/<train|test>/<image_id>.png and <output>/scales.csv; then train with
``CXR.VINDR.IMAGE_CACHE <output>`` (or ``load_vindr(image_cache=<output>)``). PNGs already
written are kept unless --overwrite. Exit status 1 only when every image to convert failed.

    python tools/prepare_vindr.py --root datasets --max-size 1024 --workers 8
"""
import argparse
import logging
import sys

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes before detectron2 is imported)
from cxr_det.data.datasets.vindr import CACHE_FOLDERS, build_png_cache, default_cache_dir

logger = logging.getLogger("prepare_vindr")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="dataset root holding vindr-cxr/ (default $CXR_DATASETS or ./datasets)")
    parser.add_argument("--splits", nargs="+", default=list(CACHE_FOLDERS), choices=CACHE_FOLDERS,
                        help="DICOM folders to convert (default: train test)")
    parser.add_argument("--max-size", type=int, required=True, help="longest side of the PNGs in pixels (never upsized)")
    parser.add_argument("--output", default=None, help="cache folder (default <root>/vindr-cxr/png_<max-size>)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0 or 1: in this process)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite PNGs that already exist")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    output = args.output or default_cache_dir(args.root, args.max_size)
    summary = build_png_cache(
        root=args.root,
        output=output,
        max_size=args.max_size,
        splits=args.splits,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    logger.info(
        "done: %d images (%d written, %d already present, %d failed); scales in %s",
        summary["total"], summary["written"], summary["existing"], summary["failed"], summary["scales_csv"],
    )
    to_convert = summary["total"] - summary["existing"]
    return 1 if to_convert and summary["failed"] == to_convert else 0


if __name__ == "__main__":
    sys.exit(main())
