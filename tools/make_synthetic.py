#!/usr/bin/env python
"""Write a small synthetic REFLACX or VinDr-CXR dataset in the real on-disk layout.

Examples:
    tools/make_synthetic.py --format reflacx --out datasets/synthetic --images 480 --seed 0
    tools/make_synthetic.py --format vindr --layout kaggle --out datasets/synthetic --images 200 --seed 1
"""
import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cxr_det  # noqa: E402,F401  (applies the compatibility fixes first)
from cxr_det.formats.vindr_format import VINDR_LAYOUTS  # noqa: E402
from cxr_det.synthetic import make_reflacx, make_vindr  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=("reflacx", "vindr"))
    p.add_argument("--out", required=True, help="dataset root (the folder CXR_DATASETS points to)")
    p.add_argument("--images", type=int, required=True, help="number of distinct images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="nominal image side in pixels")
    p.add_argument("--layout", choices=VINDR_LAYOUTS, default="physionet", help="VinDr layout")
    p.add_argument("--reflacx-dicom", action="store_true", help="REFLACX: also write the MIMIC-CXR DICOMs")
    p.add_argument(
        "--unzipped-tables",
        action="store_true",
        help="REFLACX: write the MIMIC tables (metadata, edstays, triage, patients) as plain .csv "
        "instead of .csv.gz as PhysioNet ships them; the content is the same",
    )
    return p.parse_args(argv)


def _table(title, counts):
    lines = [f"  {title}:"]
    width = max((len(str(k)) for k in counts), default=0)
    lines += [f"    {str(k):<{width}}  {v}" for k, v in counts.items()]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    if args.format == "reflacx":
        summary = make_reflacx(
            args.out, args.images, args.seed, size=args.size, write_dicom=args.reflacx_dicom,
            gzip_tables=not args.unzipped_tables,
        )
    else:
        summary = make_vindr(args.out, args.images, args.seed, size=args.size, layout=args.layout)
    elapsed = time.perf_counter() - start

    layout = f" ({summary['layout']} layout)" if "layout" in summary else ""
    print(f"synthetic {summary['format']}{layout} written to {summary['root']} in {elapsed:.1f} s")
    print(f"  files written: {summary['files_written']}")
    print(f"  images: {summary['images']} ({summary['normal_images']} without lesions)")
    if "readings" in summary:
        print(f"  readings: {summary['readings']}; images per phase: {summary['images_per_phase']}")
    print(_table("images per split", summary["images_per_split"]))
    print(_table("annotations per class", summary["annotations_per_class"]))
    if "triage_dirt" in summary:
        print(f"  ED stays: {summary['ed_stays']}; images with a stay: {summary['images_with_ed_stay']}")
        print(f"  triage rows made dirty: {summary['triage_dirt']}")
    if "dicom" in summary:
        print(f"  DICOM storage: {summary['dicom']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
