#!/usr/bin/env python
"""Build the VinDr-CXR PNG cache: display-correct 8-bit PNGs, longer side <= --max-size.

Writes <output>/<train|test>/<image_id>.png, <output>/scales.csv and <output>/summary.json;
then train with ``CXR.VINDR.IMAGE_CACHE <output>`` (or ``load_vindr(image_cache=<output>)``).
PNGs already written are kept unless --overwrite. Images are read by the project's one
reader (docs/images.md); every image whose conversion warned (DICOM without file meta,
invalid VOI, decoder fallback) is counted and listed, by kind. Exit status 1 only when every
image to convert failed.

Killed mid-way (kill -9, a pre-empted job), a rerun resumes: every file is written
atomically, and scales.csv is saved every --flush-seconds, so at most that interval's images
are converted again. --shard i/n converts the i-th of n disjoint parts (by a hash of the
image id) into the same folder with its own scales/summary files, for array jobs; once all
shards finished, --merge-shards folds them into scales.csv and summary.json.

    python tools/prepare_vindr.py --root datasets --max-size 1024 --workers 8
    # SLURM array of 8 tasks, then one merge
    python tools/prepare_vindr.py --root datasets --max-size 1024 --shard $SLURM_ARRAY_TASK_ID/8
    python tools/prepare_vindr.py --root datasets --max-size 1024 --merge-shards
"""
import argparse
import logging
import sys

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes before detectron2 is imported)
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.datasets.vindr_cache import (
    CACHE_FOLDERS,
    build_png_cache,
    default_cache_dir,
    merge_shards,
    parse_shard,
)
from cxr_det.data.image_io import DEFAULT_PERCENTILES, SCALINGS

logger = logging.getLogger("prepare_vindr")


def _shard(text):
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="dataset root holding vindr-cxr/ (default $CXR_DATASETS or ./datasets)")
    parser.add_argument("--splits", nargs="+", default=list(CACHE_FOLDERS), choices=CACHE_FOLDERS,
                        help="DICOM folders to convert (default: train test)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="longest side of the PNGs in pixels (never upsized); required unless --merge-shards --output")
    parser.add_argument("--output", default=None, help="cache folder (default <root>/vindr-cxr/png_<max-size>)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0 or 1: in this process)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite PNGs that already exist")
    parser.add_argument("--scaling", default="auto", choices=SCALINGS,
                        help="intensity rule: auto (the DICOM's VOI LUT/window, else full range), minmax, "
                             "percentile (see docs/images.md)")
    parser.add_argument("--percentiles", nargs=2, type=float, default=list(DEFAULT_PERCENTILES),
                        metavar=("LOW", "HIGH"), help="window for --scaling percentile (default 0.5 99.5)")
    parser.add_argument("--reject-no-file-meta", action="store_true",
                        help="fail DICOMs without preamble/DICM/file meta instead of reading them with a warning")
    parser.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                        help="convert only shard I of N (0 <= I < N; a hash of the image id decides), writing "
                             "scales.shard-I-of-N.csv; e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    parser.add_argument("--merge-shards", action="store_true",
                        help="convert nothing: check every shard finished and merge their files into scales.csv")
    parser.add_argument("--flush-seconds", type=float, default=30.0,
                        help="save scales.csv this often while converting (what a killed run keeps; default 30)")
    args = parser.parse_args(argv)
    if args.max_size is None and not (args.merge_shards and args.output):
        parser.error("--max-size is required (except with --merge-shards and --output)")
    if args.merge_shards and args.shard is not None:
        parser.error("--merge-shards merges the shards of a cache; it takes no --shard")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    output = args.output or default_cache_dir(args.root, args.max_size, args.scaling, args.percentiles)
    if args.merge_shards:
        try:
            summary = merge_shards(output)
        except DatasetFormatError as e:
            logger.error("%s", e)
            return 1
        logger.info("merged shards %s of %d: %d images in %s (%d failed in the shards)",
                    summary["shards"]["merged"], summary["shards"]["count"], summary["images"],
                    summary["scales_csv"], summary["failed"])
        return 0
    summary = build_png_cache(
        root=args.root,
        output=output,
        max_size=args.max_size,
        splits=args.splits,
        workers=args.workers,
        overwrite=args.overwrite,
        scaling=args.scaling,
        percentiles=args.percentiles,
        allow_no_file_meta=not args.reject_no_file_meta,
        shard=args.shard,
        flush_seconds=args.flush_seconds,
    )
    kinds = ", ".join(f"{kind}: {n}" for kind, n in summary["warning_kinds"].items()) or "none"
    logger.info(
        "done: %d images (%d written, %d already present, %d failed, %d converted with warnings [%s]); scales in %s",
        summary["total"], summary["written"], summary["existing"], summary["failed"], summary["warned"], kinds,
        summary["scales_csv"],
    )
    for file, kind, message in summary["warnings"]:
        logger.info("warning [%s] %s", kind, message)
    if args.shard is not None:
        logger.info("shard %d/%d done; once every shard has finished: %s --output %s --merge-shards",
                    args.shard[0], args.shard[1], sys.argv[0], output)
    to_convert = summary["total"] - summary["existing"]
    return 1 if to_convert and summary["failed"] == to_convert else 0


if __name__ == "__main__":
    sys.exit(main())
