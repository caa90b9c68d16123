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

from cxr_det.evaluation.run_comparison import (  # noqa: F401  (merged_ap50, clinical_gain: the tool's API)
    LOOK_ALIKE,
    clinical_gain,
    merged_ap50,
    plot_per_class_ap50,
    seconds_per_iter,
)

ROOT = Path(__file__).resolve().parents[1]
TWINS = {
    "image-only": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml",
    "clinical": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml",
}


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
    print(f"chart: {plot_per_class_ap50(summary, classes, Path(args.output) / 'benchmark_fusion.png')}")


if __name__ == "__main__":
    main()
