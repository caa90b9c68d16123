#!/usr/bin/env python
"""Write a small synthetic dataset in a real dataset's on-disk layout.

Detection: REFLACX (with its MIMIC-CXR-JPG images and MIMIC-IV-ED / MIMIC-IV tables) and
VinDr-CXR (PhysioNet or Kaggle layout). Classification: CheXpert-v1.0-small, MIMIC-CXR-JPG
labels (with MIMIC-IV-ED / MIMIC-IV tables), VinDr-CXR image labels, and a folder of classes
(the pediatric pneumonia set's split tree or the COVID-19 Radiography Database's flat one).
CheXpert and MIMIC-CXR images show their findings; Atelectasis depends on the patient's age
only (never painted): see cxr_det/synthetic/finding_labels.py.

Examples:
    tools/make_synthetic.py --format reflacx --out datasets/synthetic --images 480 --seed 0
    tools/make_synthetic.py --format vindr --layout kaggle --out datasets/synthetic --images 200 --seed 1
    tools/make_synthetic.py --format chexpert --out datasets/synthetic_cls --patients 600 --size 64
    tools/make_synthetic.py --format mimic-labels --out datasets/synthetic_mimic --patients 300 --size 64
    tools/make_synthetic.py --format vindr-labels --out datasets/synthetic_vindr --images 400 --size 128
    tools/make_synthetic.py --format folder --layout flat --name covid --images 50 --image-format mixed \\
        --out datasets/synthetic_cls
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
from cxr_det.synthetic.chexpert_writer import make_chexpert  # noqa: E402
from cxr_det.synthetic.image_label_writers import FOLDER_IMAGE_FORMATS, make_image_folder, make_vindr_image_labels  # noqa: E402
from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels  # noqa: E402

FORMATS = ("reflacx", "vindr", "chexpert", "mimic-labels", "vindr-labels", "folder")
FOLDER_LAYOUTS = ("split", "flat")
# Nominal image side when --size is not given.
DEFAULT_SIZE = {"reflacx": 512, "vindr": 512, "chexpert": 64, "mimic-labels": 64, "vindr-labels": 64, "folder": 32}
# Folder name when --name is not given, by layout (the real sets' names).
DEFAULT_FOLDER_NAME = {"split": "chest_xray", "flat": "COVID-19_Radiography_Dataset"}
_BY_PATIENT = ("chexpert", "mimic-labels")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="dataset root (the folder CXR_DATASETS points to)")
    p.add_argument("--images", type=int, help="reflacx, vindr, vindr-labels: number of distinct images; "
                   "folder: images per class (in each split folder of the split layout)")
    p.add_argument("--patients", type=int, help="chexpert: patients of train.csv; mimic-labels: subjects")
    p.add_argument("--valid-patients", type=int, default=None,
                   help="chexpert: patients of valid.csv (default patients // 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None,
                   help="nominal image side in pixels (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_SIZE.items()) + ")")
    p.add_argument("--layout", choices=VINDR_LAYOUTS + FOLDER_LAYOUTS, default=None,
                   help="vindr: physionet (default) or kaggle; folder: split (default) or flat")
    p.add_argument("--reflacx-dicom", action="store_true", help="REFLACX: also write the MIMIC-CXR DICOMs")
    p.add_argument(
        "--unzipped-tables",
        action="store_true",
        help="REFLACX, mimic-labels: write the MIMIC tables (metadata, labels, split, edstays, triage, "
        "patients) as plain .csv instead of .csv.gz as PhysioNet ships them; the content is the same",
    )
    p.add_argument("--disagreement", type=float, default=0.4,
                   help="vindr-labels: fraction of training images with one contradicting reader")
    p.add_argument("--name", default=None, help="folder: the dataset's folder name under --out "
                   f"(default {DEFAULT_FOLDER_NAME['split']} / {DEFAULT_FOLDER_NAME['flat']} by layout)")
    p.add_argument("--classes", default=None, help="folder: comma-separated class folder names "
                   "(default NORMAL,PNEUMONIA for split; the 4 COVID-19 Radiography classes for flat)")
    p.add_argument("--image-format", choices=tuple(FOLDER_IMAGE_FORMATS) + ("mixed",), default=None,
                   help="folder: image files (default jpeg for split, png for flat; mixed: png, jpeg, dicom in turn)")
    args = p.parse_args(argv)
    need = "patients" if args.format in _BY_PATIENT else "images"
    if getattr(args, need) is None:
        p.error(f"--format {args.format} needs --{need}")
    if args.layout is not None and args.format != "reflacx":  # (reflacx has one layout; --layout ignored as before)
        allowed = {"vindr": VINDR_LAYOUTS, "folder": FOLDER_LAYOUTS}.get(args.format, ())
        if args.layout not in allowed:
            p.error(f"--layout {args.layout} does not apply to --format {args.format}"
                    + (f" (choose from {', '.join(allowed)})" if allowed else ""))
    if args.size is None:
        args.size = DEFAULT_SIZE[args.format]
    return args


def _table(title, counts):
    lines = [f"  {title}:"]
    width = max((len(str(k)) for k in counts), default=0)
    lines += [f"    {str(k):<{width}}  {v}" for k, v in counts.items()]
    return "\n".join(lines)


def _label_table(title, counts):
    """Per-label cell counts (positive, uncertain, negative, blank) and prevalence of present findings."""
    rows = sum(next(iter(counts.values())).values()) if counts else 0
    width = max(len(k) for k in counts) if counts else 0
    lines = [f"  {title}, {rows} images:", f"    {'label':<{width}}  {'pos':>4} {'unc':>4} {'neg':>4} {'blank':>5}  prevalence (pos+unc)"]
    for name, c in counts.items():
        prevalence = (c["positive"] + c["uncertain"]) / rows if rows else 0.0
        cells = f"{c['positive']:4d} {c['uncertain']:4d} {c['negative']:4d} {c['blank']:5d}"
        lines.append(f"    {name:<{width}}  {cells}  {100 * prevalence:5.1f}%")
    return "\n".join(lines)


def _detection(args):
    if args.format == "reflacx":
        return make_reflacx(
            args.out, args.images, args.seed, size=args.size, write_dicom=args.reflacx_dicom,
            gzip_tables=not args.unzipped_tables,
        )
    return make_vindr(args.out, args.images, args.seed, size=args.size, layout=args.layout or "physionet")


def _print_detection(summary, elapsed):
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


def _print_classification(args, summary, elapsed):
    print(f"synthetic {args.format} written to {Path(args.out)} in {elapsed:.1f} s")
    print(f"  files written: {summary['files_written']}")
    if args.format == "chexpert":
        print(f"  patients: {summary['patients']}; train.csv rows: {summary['train_rows']}; "
              f"valid.csv rows: {summary['valid_rows']}; lateral views: {summary['lateral']}")
        print(f"  Sex Unknown rows: {summary['sex_unknown']}; Age 0 rows: {summary['age_zero']}")
        print(_label_table("train.csv", summary["label_counts"]["train"]))
        print(_label_table("valid.csv", summary["label_counts"]["valid"]))
    elif args.format == "mimic-labels":
        print(f"  subjects: {summary['subjects']}; studies: {summary['studies']}; images: {summary['images']}")
        print(_table("images per split", summary["images_per_split"]))
        print(_table("images per ViewPosition ('' = blank)", summary["views"]))
        print(f"  ED stays: {summary['ed_stays']}; studies with a stay: {summary['studies_with_ed_stay']}")
        print(f"  triage rows made dirty: {summary['triage_dirt']}")
        for part, counts in summary["label_counts"].items():
            print(_label_table(f"{part} (CheXpert labeler)", counts))
    elif args.format == "vindr-labels":
        info = summary["image_labels"]
        print(f"  images: {summary['images']} ({summary['normal_images']} without lesions); "
              f"train {info['train_images']} ({info['train_rows']} reader rows, "
              f"{info['images_with_a_disagreeing_reader']} with a disagreeing reader); test {info['test_images']}")
        train, test = info["train_positives_majority"], info["test_positives"]
        width = max(len(k) for k in train)
        print(f"  {'label':<{width}}  train (majority)  test   prevalence")
        for name in train:
            share = (train[name] + test[name]) / max(1, info["train_images"] + info["test_images"])
            print(f"    {name:<{width}}  {train[name]:16d}  {test[name]:4d}   {100 * share:5.1f}%")
    else:
        print(f"  {summary['name']} ({summary['layout']} layout, {summary['image_format']} images): "
              f"classes {summary['classes']}; {summary['images']} images")
        print(_table("images per folder", summary["images_per_folder"]))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    if args.format in ("reflacx", "vindr"):
        summary = _detection(args)
        _print_detection(summary, time.perf_counter() - start)
        return 0
    if args.format == "chexpert":
        summary = make_chexpert(args.out, args.patients, args.seed, size=args.size, n_valid_patients=args.valid_patients)
    elif args.format == "mimic-labels":
        summary = make_mimic_cxr_labels(args.out, args.patients, args.seed, size=args.size, gzipped=not args.unzipped_tables)
    elif args.format == "vindr-labels":
        summary = make_vindr_image_labels(args.out, args.images, args.seed, size=args.size, disagreement=args.disagreement)
    else:
        layout = args.layout or "split"
        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        summary = make_image_folder(args.out, args.name or DEFAULT_FOLDER_NAME[layout], args.images, args.seed,
                                    layout=layout, classes=classes, size=args.size, image_format=args.image_format)
    _print_classification(args, summary, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
