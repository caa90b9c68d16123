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
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
TWINS = {
    "image-only": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml",
    "clinical": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml",
}
LOOK_ALIKE = ("Consolidation", "Pulmonary edema")


def seconds_per_iter(metrics_json, skip=20):
    """Median of detectron2's per-iteration ``time`` after the first ``skip`` iterations."""
    times = []
    with open(metrics_json) as f:
        for line in f:
            row = json.loads(line)
            if "time" in row and row.get("iteration", 0) >= skip:
                times.append(row["time"])
    return statistics.median(times) if times else float("nan")


def merged_ap50(inference_dir, classes):
    """COCO AP50 of ``classes`` scored as a single class, from the evaluator's GT and results files."""
    from cxr_det.evaluation.coco_protocol import coco_metrics

    gt = json.loads((inference_dir / "ground_truth_coco.json").read_text())
    dt = json.loads((inference_dir / "coco_instances_results.json").read_text())
    ids = {c["id"] for c in gt["categories"] if c["name"] in classes}
    if len(ids) != len(classes):
        raise SystemExit(f"{inference_dir}/ground_truth_coco.json lacks one of the classes {classes}")
    merged = min(ids)
    gt["categories"] = [{"id": merged, "name": " or ".join(classes)}]
    gt["annotations"] = [dict(a, category_id=merged) for a in gt["annotations"] if a["category_id"] in ids]
    dt = [dict(r, category_id=merged) for r in dt if r["category_id"] in ids]
    return coco_metrics(gt, dt, [gt["categories"][0]["name"]], tasks=["bbox"])["bbox"]["AP50"]


def clinical_gain(image_only_dir, clinical_dir, look_alike=LOOK_ALIKE, resamples=1000, seed=0):
    """Clinical - image-only COCO AP50 with paired-bootstrap 95% intervals over images.

    Reads each run's evaluator files (``ground_truth_coco.json``,
    ``coco_instances_results.json``) from its inference folder; both must hold the same
    images and ground truth (else SystemExit naming the files). Returns an ordered dict of
    rows ("AP50", "AP50 look-alike pair" (mean of the pair's AP50), then "AP50 <class>"),
    each ``{"A": image-only, "B": clinical, "difference", "low", "high", "p_value"}`` in
    percent (see :func:`cxr_det.evaluation.bootstrap.difference_row`).
    """
    from collections import OrderedDict

    import numpy as np

    from cxr_det.evaluation.bootstrap import difference_row, paired_resamples
    from cxr_det.evaluation.coco_files import load_ground_truth, load_predictions
    from cxr_det.evaluation.core import EvalOptions, build_image_boxes, drop_bad_gt_boxes

    image_only_dir, clinical_dir = Path(image_only_dir), Path(clinical_dir)
    records, names, cat_to_index = load_ground_truth(image_only_dir / "ground_truth_coco.json")
    other, other_names, _ = load_ground_truth(clinical_dir / "ground_truth_coco.json")
    if names != other_names or records != other:
        raise SystemExit(f"{image_only_dir}/ground_truth_coco.json and {clinical_dir}/ground_truth_coco.json differ: "
                         "the two runs were not evaluated on the same images")
    missing = [c for c in look_alike if c not in names]
    if missing:
        raise SystemExit(f"{image_only_dir}/ground_truth_coco.json lacks the classes {missing}")
    records = drop_bad_gt_boxes(records)
    images = [
        build_image_boxes(records, load_predictions(d / "coco_instances_results.json", cat_to_index), len(names))[0]
        for d in (image_only_dir, clinical_dir)
    ]
    scorer, (point_a, point_b), ((class_a, sum_a), (class_b, sum_b)) = paired_resamples(
        images[0], images[1], names, EvalOptions(protocols=("coco",)), resamples, seed
    )
    pair = [names.index(c) for c in look_alike]
    rows = OrderedDict()
    rows["AP50"] = difference_row(point_a[1]["AP50"], point_b[1]["AP50"], sum_b["AP50"] - sum_a["AP50"])
    with np.errstate(invalid="ignore"):
        look_a, look_b = np.nanmean(class_a["AP50"][:, pair], axis=1), np.nanmean(class_b["AP50"][:, pair], axis=1)
    rows["AP50 look-alike pair"] = difference_row(
        np.mean(point_a[0]["AP50"][pair]), np.mean(point_b[0]["AP50"][pair]), look_b - look_a
    )
    for k, name in enumerate(names):
        rows[f"AP50 {name}"] = difference_row(
            point_a[0]["AP50"][k], point_b[0]["AP50"][k], class_b["AP50"][:, k] - class_a["AP50"][:, k]
        )
    return rows


def main():
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
    args = parser.parse_args()

    env = dict(os.environ, CXR_DATASETS=str(args.root))
    if not args.report_only:
        if (Path(args.root) / "reflacx").is_dir():
            print(f"using the existing data in {args.root} (--images applies only when it has to be generated)")
        else:
            subprocess.run([sys.executable, "tools/make_synthetic.py", "--format", "reflacx", "--out", args.root,
                            "--images", str(args.images), "--seed", str(args.seed)], check=True, cwd=ROOT, env=env)

    rows, summary = [], {}
    for name, config in TWINS.items():
        out = Path(args.output) / name
        if args.report_only:
            if not (out / "inference" / args.split / "metrics.json").is_file():
                raise SystemExit(f"--report-only: no finished run in {out} (no inference/{args.split}/metrics.json)")
        else:
            subprocess.run(
                [sys.executable, "tools/train_net.py", "--config-file", config,
                 "OUTPUT_DIR", str(out), "SEED", str(args.seed), "SOLVER.MAX_ITER", str(args.iters),
                 "SOLVER.CHECKPOINT_PERIOD", str(args.iters), "DATASETS.TEST", f"('{args.split}',)",
                 "TEST.CXR_EVAL.PLOTS", "False"],
                check=True, cwd=ROOT, env=env,
            )
        results = json.loads((out / "inference" / args.split / "metrics.json").read_text())["results"]["bbox"]
        per_class = {k[len("AP50-"):]: v for k, v in results.items() if k.startswith("AP50-")}
        spi = seconds_per_iter(out / "metrics.json")
        summary[name] = {
            "AP": results["AP"], "AP50": results["AP50"], "AP50_per_class": per_class, "s_per_iter": spi,
            "AP50_patchy_class_agnostic": merged_ap50(out / "inference" / args.split, LOOK_ALIKE),
        }

    classes = list(summary["image-only"]["AP50_per_class"])
    headers = ["model", "AP", "AP50", *[f"AP50 {c}{' *' if c in LOOK_ALIKE else ''}" for c in classes], "s/iter", "AP50 patchy (pair as one class)"]
    for name, s in summary.items():
        rows.append([name, s["AP"], s["AP50"], *[s["AP50_per_class"][c] for c in classes], s["s_per_iter"],
                     s["AP50_patchy_class_agnostic"]])
    look = {n: statistics.mean(summary[n]["AP50_per_class"][c] for c in LOOK_ALIKE) for n in summary}
    ratio = summary["clinical"]["s_per_iter"] / summary["image-only"]["s_per_iter"]
    gt = json.loads((Path(args.output) / "clinical" / "inference" / args.split / "ground_truth_coco.json").read_text())
    n_look = {c["name"]: sum(a["category_id"] == c["id"] for a in gt["annotations"]) for c in gt["categories"]
              if c["name"] in LOOK_ALIKE}
    run_cfg = yaml.safe_load((Path(args.output) / "clinical" / "config.yaml").read_text())
    print(f"\nsynthetic REFLACX ({args.root}), {run_cfg['SOLVER']['MAX_ITER']} iterations, seed {run_cfg['SEED']}, "
          f"evaluated on {args.split} "
          f"({len(gt['images'])} images; look-alike boxes: {n_look}); * = look-alike pair")
    floatfmt = [".3f" if h == "s/iter" else ".1f" for h in headers]
    print(tabulate(rows, headers=headers, floatfmt=floatfmt, tablefmt="github"))
    print(f"\nlook-alike mean AP50: image-only {look['image-only']:.1f}, clinical {look['clinical']:.1f} "
          f"({look['clinical'] - look['image-only']:+.1f} points)")
    print(f"time per iteration clinical / image-only: {ratio:.3f}")
    gain = clinical_gain(Path(args.output) / "image-only" / "inference" / args.split,
                         Path(args.output) / "clinical" / "inference" / args.split,
                         LOOK_ALIKE, args.bootstrap, args.bootstrap_seed)
    print(f"\nclinical gain (clinical - image-only), paired bootstrap over the {len(gt['images'])} evaluation images, "
          f"{args.bootstrap} resamples (seed {args.bootstrap_seed}):")
    print(tabulate([[row, v["A"], v["B"], v["difference"], f"[{v['low']:+.1f}, {v['high']:+.1f}]", v["p_value"]]
                    for row, v in gain.items()],
                   headers=["", "image-only", "clinical", "gain", "95% CI", "p"], floatfmt=".3f", tablefmt="github"))
    g = gain["AP50"]
    print(f"clinical gain in AP50: {g['difference']:+.1f} points (95% CI {g['low']:+.1f} to {g['high']:+.1f}, "
          f"p = {g['p_value']:.3f})")

    Path(args.output).mkdir(parents=True, exist_ok=True)
    summary["look_alike_AP50"] = look
    summary["time_ratio"] = ratio
    summary["clinical_gain"] = {"resamples": args.bootstrap, "seed": args.bootstrap_seed, "rows": gain}
    (Path(args.output) / "benchmark_fusion.json").write_text(json.dumps(summary, indent=2))
    _plot(summary, classes, Path(args.output) / "benchmark_fusion.png")


def _plot(summary, classes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, name in enumerate(("image-only", "clinical")):
        ax.bar(x + (i - 0.5) * 0.4, [summary[name]["AP50_per_class"][c] for c in classes], 0.4, label=name)
    ax.set_xticks(x, [c + (" *" if c in LOOK_ALIKE else "") for c in classes], rotation=15, fontsize=8)
    ax.set_ylabel("AP50 (%)")
    ax.set_title("Per-class AP50, image-only vs clinical (* look-alike pair)")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


if __name__ == "__main__":
    main()
