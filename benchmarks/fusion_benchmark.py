"""Does clinical data help? The image-only and clinical twins trained on synthetic REFLACX
and compared (``tools/benchmark_fusion.py``).

Both twins (the demo configs) are trained with the same seed and schedule through
``tools/train_net.py`` and evaluated on the same split; the table holds COCO AP, AP50,
per-class AP50 (Consolidation and Pulmonary edema look alike in the synthetic image and
differ only in the patient's vitals, :mod:`cxr_det.synthetic`), seconds per training
iteration, and the look-alike pair scored as one class. The clinical gain (clinical -
image-only AP50) comes with its paired-bootstrap interval and p-value
(:func:`cxr_det.evaluation.run_comparison.clinical_gain`), read from the two runs' saved
evaluator files, so a report needs no retraining.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from tabulate import tabulate

from cxr_det.evaluation.coco_files import GROUND_TRUTH_FILE
from cxr_det.evaluation.run_comparison import clinical_gain, merged_ap50

__all__ = ["TWINS", "LOOK_ALIKE", "seconds_per_iter", "plot_per_class_ap50", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
TWINS = {
    "image-only": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml",
    "clinical": "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml",
}
# The synthetic REFLACX classes that look alike in the image and differ only in the
# patient's vitals: the pair clinical data should tell apart.
LOOK_ALIKE = ("Consolidation", "Pulmonary edema")


def seconds_per_iter(metrics_json, skip: int = 20) -> float:
    """Median of detectron2's per-iteration ``time`` (seconds) in a training run's
    ``metrics.json`` (one JSON object per line), after the first ``skip`` iterations; NaN
    when there is none."""
    times = []
    with open(metrics_json) as f:
        for line in f:
            row = json.loads(line)
            if "time" in row and row.get("iteration", 0) >= skip:
                times.append(row["time"])
    return statistics.median(times) if times else float("nan")


def plot_per_class_ap50(summary: dict, classes, path, models=("image-only", "clinical"), marked=LOOK_ALIKE) -> str:
    """Bar chart of per-class AP50 (percent), one bar per model of ``summary`` (``{model:
    {"AP50_per_class": {class: AP50}}}``), classes in ``marked`` starred; PNG at ``path``.
    Drawn with matplotlib's object API on the Agg canvas (no pyplot state). Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.arange(len(classes))
    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(models)
    for i, name in enumerate(models):
        offset = (i - (len(models) - 1) / 2) * width
        ax.bar(x + offset, [summary[name]["AP50_per_class"][c] for c in classes], width, label=name)
    ax.set_xticks(x, [c + (" *" if c in marked else "") for c in classes], rotation=15, fontsize=8)
    ax.set_ylabel("AP50 (%)")
    ax.set_title("Per-class AP50, image-only vs clinical (* look-alike pair)")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return str(path)


def _train(args, env):
    """Make the data when absent and train both twins (unless ``args.report_only``)."""
    if (Path(args.root) / "reflacx").is_dir():
        print(f"using the existing data in {args.root} (--images applies only when it has to be generated)")
    else:
        subprocess.run([sys.executable, "tools/make_synthetic.py", "--format", "reflacx", "--out", args.root,
                        "--images", str(args.images), "--seed", str(args.seed)], check=True, cwd=ROOT, env=env)
    for name, config in TWINS.items():
        subprocess.run(
            [sys.executable, "tools/train_net.py", "--config-file", config,
             "OUTPUT_DIR", str(Path(args.output) / name), "SEED", str(args.seed), "SOLVER.MAX_ITER", str(args.iters),
             "SOLVER.CHECKPOINT_PERIOD", str(args.iters), "DATASETS.TEST", f"('{args.split}',)",
             "TEST.CXR_EVAL.PLOTS", "False"],
            check=True, cwd=ROOT, env=env,
        )


def _summary(args):
    """Per twin: AP, AP50, per-class AP50, seconds per iteration, the pair's one-class AP50."""
    summary = {}
    for name in TWINS:
        out = Path(args.output) / name
        metrics = out / "inference" / args.split / "metrics.json"
        if not metrics.is_file():
            raise SystemExit(f"no finished run in {out} (no inference/{args.split}/metrics.json)")
        results = json.loads(metrics.read_text())["results"]["bbox"]
        per_class = {k[len("AP50-"):]: v for k, v in results.items() if k.startswith("AP50-")}
        summary[name] = {
            "AP": results["AP"], "AP50": results["AP50"], "AP50_per_class": per_class,
            "s_per_iter": seconds_per_iter(out / "metrics.json"),
            "AP50_patchy_class_agnostic": merged_ap50(out / "inference" / args.split, LOOK_ALIKE),
        }
    return summary


def run_benchmark(args):
    """Train (unless ``args.report_only``), print the tables, write ``benchmark_fusion.json``
    and ``benchmark_fusion.png`` under ``args.output``. ``args``: the namespace of
    ``tools/benchmark_fusion.py`` (root, images, seed, iters, split, output, bootstrap,
    bootstrap_seed, report_only). Raises SystemExit when a run is missing."""
    if not args.report_only:
        _train(args, dict(os.environ, CXR_DATASETS=str(args.root)))
    summary = _summary(args)
    classes = list(summary["image-only"]["AP50_per_class"])
    headers = ["model", "AP", "AP50", *[f"AP50 {c}{' *' if c in LOOK_ALIKE else ''}" for c in classes], "s/iter",
               "AP50 patchy (pair as one class)"]
    rows = [[name, s["AP"], s["AP50"], *[s["AP50_per_class"][c] for c in classes], s["s_per_iter"],
             s["AP50_patchy_class_agnostic"]] for name, s in summary.items()]
    look = {n: statistics.mean(summary[n]["AP50_per_class"][c] for c in LOOK_ALIKE) for n in summary}
    ratio = summary["clinical"]["s_per_iter"] / summary["image-only"]["s_per_iter"]
    inference = {name: Path(args.output) / name / "inference" / args.split for name in TWINS}
    gt = json.loads((inference["clinical"] / GROUND_TRUTH_FILE).read_text())
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
    gain = clinical_gain(inference["image-only"], inference["clinical"], LOOK_ALIKE, args.bootstrap,
                         args.bootstrap_seed)
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
    return summary
