"""Does clinical data help a classifier? The image-only and clinical twins of the synthetic
CheXpert demo trained and compared (``tools/benchmark_classification.py``).

Both twins (``configs/demo/classifier_R18_chexpert_synthetic{,_clinical}.yaml``) train with
the same seed and schedule through ``tools/train_net.py`` and are evaluated on the same
split (by default the official-layout ``valid.csv``, ``chexpert_valid``). The table holds,
per label, ROC AUC with its 95% bootstrap interval for each twin, and the clinical gain
(clinical - image-only AUC) with its paired-bootstrap interval and p-value over the
evaluation images (resampled together for both twins); then the macro AUC over the labels
the image shows, and the seconds per training iteration of each twin and their ratio: as the
two training runs logged them (separate runs, so machine load differs between them), and
measured side by side in one process, the twins' training steps interleaved (the ratio the
target is checked on).

In the synthetic CheXpert data (:mod:`cxr_det.synthetic.chexpert_writer`), Atelectasis is
never painted: it depends on the patient's age alone (:data:`CLINICAL_ONLY`). The issue's
targets are printed beside the figures: image-only macro AUC >= 0.85 on the other labels;
clinical >= image-only + 0.05 AUC on Atelectasis with an interval excluding 0; clinical /
image-only time per iteration <= 1.10. The AUCs are scikit-learn's ``roc_auc_score`` over
the images where the label counts (``label_weights`` > 0), read from the two runs' saved
``classification_predictions.json``, so ``--report-only`` needs no retraining.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tabulate import tabulate

from benchmarks.fusion_benchmark import seconds_per_iter
from cxr_det.evaluation.bootstrap import paired_p_value, percentile_interval, resample_indices
from cxr_det.synthetic.finding_labels import CLINICAL_ONLY_LABEL

__all__ = ["TWINS", "CLINICAL_ONLY", "TARGETS", "load_scores", "auc_table", "interleaved_step_seconds", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[1]
TWINS = {
    "image-only": "configs/demo/classifier_R18_chexpert_synthetic.yaml",
    "clinical": "configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml",
}
# The synthetic label that only the patient's age tells apart (never painted in the image).
CLINICAL_ONLY = CLINICAL_ONLY_LABEL
# The targets: image-only macro AUC over the image-visible labels, the clinical AUC
# gain on CLINICAL_ONLY, and the clinical / image-only time per iteration.
TARGETS = {"image_macro_auc": 0.85, "clinical_gain": 0.05, "time_ratio": 1.10}
PREDICTIONS_FILE = "classification_predictions.json"


def load_scores(path):
    """``{image_id: scores}`` from an evaluator's ``classification_predictions.json``
    (a list of rows with ``image_id`` and ``scores``, C probabilities each).

    Raises:
        FileNotFoundError, ValueError: no file, or rows without those fields (naming the file).
    """
    with open(path) as f:
        rows = json.load(f)
    if isinstance(rows, dict):
        rows = rows.get("predictions", [])
    try:
        return {int(r["image_id"]): np.asarray(r["scores"], dtype=np.float64) for r in rows}
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: rows need image_id and scores ({e})") from e


def _ground_truth(cfg_file, split, root):
    """(image_ids, targets (N, C), weights (N, C), label names) of ``split`` under ``cfg_file``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from cxr_det.config import get_cxr_cfg
    from cxr_det.data import register_from_config, unregister_cxr_datasets

    cfg = get_cxr_cfg(str(ROOT / cfg_file), ["CXR.DATASET_ROOT", str(root)])
    unregister_cxr_datasets()
    register_from_config(cfg)
    records = DatasetCatalog.get(split)
    names = list(MetadataCatalog.get(split).thing_classes)
    ids = np.array([r["image_id"] for r in records])
    targets = np.array([r["labels"] for r in records], dtype=np.float64)
    weights = np.array([r["label_weights"] for r in records], dtype=np.float64)
    return ids, targets, weights, names


def _auc(targets, scores, weights):
    keep = weights > 0
    t, s = targets[keep], scores[keep]
    if t.min(initial=1) == t.max(initial=0):
        return float("nan")
    return float(roc_auc_score(t, s))


def auc_table(targets, weights, scores_a, scores_b, names, resamples=1000, seed=0):
    """Per-label AUC of two models on the same images, with percentile bootstrap intervals
    and the paired difference b - a.

    Args:
        targets, weights: float arrays (N, C): 0/1 labels and label weights (0 = ignored).
        scores_a, scores_b: float arrays (N, C): the two models' probabilities.
        names: C label names.
        resamples: bootstrap resamples of the N images (the same resample for both models).

    Returns:
        ``{label: {"a": auc, "a_ci": (lo, hi), "b": ..., "b_ci": ..., "gain": b - a,
        "gain_ci": (lo, hi), "p": two-sided paired p-value}}``, AUCs in 0..1.
    """
    idx = resample_indices(len(targets), resamples, seed)
    out = {}
    for c, name in enumerate(names):
        t, w = targets[:, c], weights[:, c]
        a, b = _auc(t, scores_a[:, c], w), _auc(t, scores_b[:, c], w)
        boot_a = np.array([_auc(t[i], scores_a[i, c], w[i]) for i in idx])
        boot_b = np.array([_auc(t[i], scores_b[i, c], w[i]) for i in idx])
        ok = ~(np.isnan(boot_a) | np.isnan(boot_b))
        diff = boot_b[ok] - boot_a[ok]
        out[name] = {
            "a": a, "a_ci": percentile_interval(boot_a[ok]), "b": b, "b_ci": percentile_interval(boot_b[ok]),
            "gain": b - a, "gain_ci": percentile_interval(diff), "p": paired_p_value(diff),
        }
    return out


def interleaved_step_seconds(run_dirs, steps=60, warmup=10):
    """Median seconds per training step (next batch from the training loader, forward,
    backward, optimizer step) of each run's config, the runs' steps interleaved in one process
    so that both see the same machine load: the fair ratio on a shared, noisy machine.

    Args:
        run_dirs: ``{name: training OUTPUT_DIR}`` (its ``config.yaml`` is used: the task,
            classes and clinical statistics it was trained with); the datasets must be
            reachable under the config's dataset root or ``$CXR_DATASETS``.
        steps: timed steps per run after ``warmup`` untimed ones.

    Returns:
        ``{name: seconds}``.
    """
    import statistics
    import time

    import torch

    import cxr_det.modeling  # noqa: F401  (registers the classifier)
    from cxr_det.config import get_cxr_cfg
    from cxr_det.data import register_from_config, unregister_cxr_datasets
    from cxr_det.engine.trainer import Trainer

    state = {}
    for name, run in run_dirs.items():
        cfg = get_cxr_cfg(str(Path(run) / "config.yaml"))
        unregister_cxr_datasets()
        register_from_config(cfg)
        torch.manual_seed(0)
        model = Trainer.build_model(cfg)
        model.train()
        state[name] = (model, Trainer.build_optimizer(cfg, model), iter(Trainer.build_train_loader(cfg)))
    times = {name: [] for name in state}
    for step in range(warmup + steps):
        for name, (model, optimizer, loader) in state.items():
            start = time.perf_counter()
            loss = sum(model(next(loader)).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _train(args, env):
    """Generate the data when absent, then train both twins (unless ``--report-only``)."""
    if not (Path(args.root) / "chexpert").is_dir():
        subprocess.run([sys.executable, str(ROOT / "tools/make_synthetic.py"), "--format", "chexpert", "--out",
                        str(args.root), "--patients", str(args.patients), "--size", str(args.size),
                        "--seed", str(args.seed)], check=True, env=env, cwd=ROOT)
    else:
        print(f"using the existing data in {args.root} (--patients applies only when it has to be generated)")
    for name, cfg_file in TWINS.items():
        out = Path(args.output) / name
        cmd = [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", str(ROOT / cfg_file),
               "OUTPUT_DIR", str(out), "SEED", str(args.seed)]
        if args.iters:
            cmd += ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.CHECKPOINT_PERIOD", str(args.iters),
                    "TEST.EVAL_PERIOD", "0"]
        print(f"training the {name} twin: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def _fmt(v, ci=None):
    if v is None or np.isnan(v):
        return "n/a"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else "")


def run_benchmark(args):
    """Train (unless ``args.report_only``), compare, print the table; returns the summary
    dict also written to ``<output>/benchmark_classification.json``."""
    env = dict(os.environ, CXR_DATASETS=str(Path(args.root).resolve()))
    if not args.report_only:
        _train(args, env)
    ids, targets, weights, names = _ground_truth(TWINS["image-only"], args.split, Path(args.root).resolve())
    scores = {}
    for name in TWINS:
        path = Path(args.output) / name / "inference" / args.split / PREDICTIONS_FILE
        by_id = load_scores(path)
        missing = [i for i in ids if int(i) not in by_id]
        if missing:
            raise ValueError(f"{path}: no prediction for {len(missing)} image(s) of {args.split}, e.g. {missing[:3]}")
        scores[name] = np.stack([by_id[int(i)] for i in ids])
    table = auc_table(targets, weights, scores["image-only"], scores["clinical"], names, args.bootstrap, args.seed)
    visible = [n for n in names if n != CLINICAL_ONLY]
    macro = {key: float(np.nanmean([table[n][key] for n in visible])) for key in ("a", "b")}
    times = {name: seconds_per_iter(Path(args.output) / name / "metrics.json") for name in TWINS}
    run_ratio = times["clinical"] / times["image-only"]
    os.environ.setdefault("CXR_DATASETS", env["CXR_DATASETS"])
    step = interleaved_step_seconds({name: Path(args.output) / name for name in TWINS}, steps=args.timing_steps)
    ratio = step["clinical"] / step["image-only"]
    rows = [[n + (" *" if n == CLINICAL_ONLY else ""), _fmt(r["a"], r["a_ci"]), _fmt(r["b"], r["b_ci"]),
             f"{r['gain']:+.3f} [{r['gain_ci'][0]:+.3f}, {r['gain_ci'][1]:+.3f}]", f"{r['p']:.3f}"]
            for n, r in table.items()]
    rows.append([f"macro AUC ({len(visible)} image labels)", _fmt(macro["a"]), _fmt(macro["b"]),
                 f"{macro['b'] - macro['a']:+.3f}", ""])
    rows.append(["seconds / iteration, training runs", f"{times['image-only']:.3f}", f"{times['clinical']:.3f}",
                 f"ratio {run_ratio:.3f}", ""])
    rows.append([f"seconds / step, interleaved ({args.timing_steps} each)", f"{step['image-only']:.3f}",
                 f"{step['clinical']:.3f}", f"ratio {ratio:.3f}", ""])
    print(f"\n{args.split}: {len(ids)} images, {args.bootstrap} bootstrap resamples (* = told apart by age only)")
    print(tabulate(rows, headers=["label", "image-only AUC [95% CI]", "clinical AUC [95% CI]",
                                  "gain [95% CI]", "p"], tablefmt="github"))
    gain = table.get(CLINICAL_ONLY)
    checks = {
        "image-only macro AUC >= 0.85": macro["a"] >= TARGETS["image_macro_auc"],
        f"{CLINICAL_ONLY} gain >= +0.05, CI excluding 0": bool(
            gain and gain["gain"] >= TARGETS["clinical_gain"] and gain["gain_ci"][0] > 0),
        "time ratio (interleaved) <= 1.10": ratio <= TARGETS["time_ratio"],
    }
    for text, ok in checks.items():
        print(f"  {'met    ' if ok else 'NOT met'}  {text}")
    summary = {"split": args.split, "images": int(len(ids)), "bootstrap": int(args.bootstrap), "labels": table,
               "macro_auc_image_labels": macro, "seconds_per_iter": times, "run_time_ratio": run_ratio,
               "interleaved_seconds_per_step": step, "time_ratio": ratio,
               "targets_met": checks}
    os.makedirs(args.output, exist_ok=True)
    with open(Path(args.output) / "benchmark_classification.json", "w") as f:
        json.dump(summary, f, indent=2, default=float)
    return summary
