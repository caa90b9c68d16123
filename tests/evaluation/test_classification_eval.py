"""Classification metrics against scikit-learn and hand-computed cases; the evaluator on a
registered toy dataset (thresholds carried from validation to test); tools/evaluate.py."""
import contextlib
import io
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    fbeta_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.engine.evaluators import build_evaluator
from cxr_det.evaluation.classification import (
    ClassificationEvaluator,
    bootstrap_auc,
    choose_threshold,
    classification_inputs,
    multi_label_metrics,
    read_thresholds,
    single_label_metrics,
)
from cxr_det.evaluation.classification_plots import CLASSIFICATION_METRIC_PATTERNS, plot_classification_training_curves
from cxr_det.utils.training_curves import load_metrics, metric_series, training_figures
from helpers import load_tool

LABELS = ["Atelectasis", "Edema", "Effusion"]
PNG = b"\x89PNG\r\n\x1a\n"
LOGGER = "cxr_det.evaluation.classification"


def _multi_label_data(n=120, seed=0):
    """Scores (float32 values) that rank positives higher, targets and weights with ~15% zeros."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, len(LABELS))) < [0.3, 0.2, 0.45]).astype(np.float64)
    scores = np.clip(0.35 * targets + 0.65 * rng.random(targets.shape), 0, 1).astype(np.float32).astype(np.float64)
    weights = (rng.random(targets.shape) > 0.15).astype(np.float64)
    return scores, targets, weights


def _f2_brute_force(scores, targets):
    """{threshold: F2} of "score >= t" at every distinct score, in exact fractions."""
    out = {}
    pos = int(sum(targets))
    for t in sorted(set(scores)):
        tp = sum(1 for s, y in zip(scores, targets) if s >= t and y)
        fp = sum(1 for s, y in zip(scores, targets) if s >= t and not y)
        out[t] = Fraction(5 * tp, 5 * tp + 4 * (pos - tp) + fp)
    return out


def test_multi_label_metrics_equal_scikit_learn_on_the_included_pairs():
    scores, targets, weights = _multi_label_data()
    thresholds = [0.4, 0.5, 0.45]
    m = multi_label_metrics(scores, targets, weights, LABELS, thresholds)
    res = m.results
    aucs, aps = [], []
    for k, name in enumerate(LABELS):
        keep = weights[:, k] > 0  # weight-0 pairs removed by hand
        y, s = targets[keep, k].astype(int), scores[keep, k]
        aucs.append(100 * roc_auc_score(y, s))
        aps.append(100 * average_precision_score(y, s))
        assert res[f"AUC/{name}"] == pytest.approx(aucs[-1], abs=1e-9)
        assert res[f"AP/{name}"] == pytest.approx(aps[-1], abs=1e-9)
        pred = (s >= thresholds[k]).astype(int)
        assert res[f"sensitivity/{name}"] == pytest.approx(100 * recall_score(y, pred))
        assert res[f"precision/{name}"] == pytest.approx(100 * precision_score(y, pred, zero_division=0))
        assert res[f"F1/{name}"] == pytest.approx(100 * fbeta_score(y, pred, beta=1))
        assert res[f"F2/{name}"] == pytest.approx(100 * fbeta_score(y, pred, beta=2))
        tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert res[f"specificity/{name}"] == pytest.approx(100 * tn / (tn + fp))
        assert m.counts[name] == dict(TP=tp, FP=fp, TN=tn, FN=fn, positives=y.sum(), negatives=(1 - y).sum(),
                                      ignored=(~keep).sum())
        assert res[f"threshold/{name}"] == thresholds[k]
    assert res["mAUC"] == pytest.approx(np.mean(aucs)) and res["mAP"] == pytest.approx(np.mean(aps))
    # micro: every included (image, label) pair pooled
    keep = weights > 0
    assert res["microAUC"] == pytest.approx(100 * roc_auc_score(targets[keep], scores[keep]), abs=1e-9)
    assert res["microAP"] == pytest.approx(100 * average_precision_score(targets[keep], scores[keep]), abs=1e-9)
    pooled_pred = (scores >= np.asarray(thresholds)[None, :])[keep].astype(int)
    assert res["micro_F2"] == pytest.approx(100 * fbeta_score(targets[keep].astype(int), pooled_pred, beta=2))
    assert res["micro_sensitivity"] == pytest.approx(100 * recall_score(targets[keep].astype(int), pooled_pred))
    # an ignored pair's target never matters, not even an invalid one
    bad = targets.copy()
    bad[weights == 0] = -1.0
    assert multi_label_metrics(scores, bad, weights, LABELS, thresholds).results == res


def test_single_label_confusion_matrix_rates_and_balanced_accuracy_by_hand():
    # truth 0,0,0,1,1,2,2,2; arg-max decisions 0,0,1,1,2,2,2,0
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    decided = [0, 0, 1, 1, 2, 2, 2, 0]
    scores = np.full((8, 3), 0.2)
    scores[np.arange(8), decided] = 0.6
    scores[:, 0] += np.linspace(0, 0.01, 8)  # no ties in class 0's ranking
    m = single_label_metrics(scores, labels, ["COVID", "Normal", "Pneumonia"])
    assert m.confusion_matrix.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    res = m.results
    assert res["accuracy"] == pytest.approx(100 * 5 / 8)
    assert res["balanced_accuracy"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert res["balanced_accuracy"] == pytest.approx(100 * balanced_accuracy_score(labels, decided))
    # per class: sensitivity = correct / class size; FPR = others decided as it / others; FNR = 1 - sensitivity
    assert [res[f"sensitivity/{c}"] for c in ("COVID", "Normal", "Pneumonia")] == pytest.approx([200 / 3, 50, 200 / 3])
    assert [res[f"FPR/{c}"] for c in ("COVID", "Normal", "Pneumonia")] == pytest.approx([20, 100 / 6, 20])
    assert [res[f"FNR/{c}"] for c in ("COVID", "Normal", "Pneumonia")] == pytest.approx([100 / 3, 50, 100 / 3])
    assert res["precision/Normal"] == pytest.approx(50) and res["specificity/COVID"] == pytest.approx(80)
    assert m.counts["Pneumonia"] == dict(TP=2, FP=1, TN=4, FN=1, positives=3, negatives=5, ignored=0)
    for k, c in enumerate(("COVID", "Normal", "Pneumonia")):
        assert res[f"AUC/{c}"] == pytest.approx(100 * roc_auc_score(labels == k, scores[:, k]))
    assert "threshold/Normal" not in res  # arg-max decides with more than two classes


def test_binary_decides_on_the_class_1_score_at_the_threshold():
    scores1 = np.array([0.9, 0.7, 0.4, 0.35, 0.2, 0.1])
    labels = np.array([1, 0, 1, 1, 0, 0])
    scores = np.stack([1 - scores1, scores1], axis=1)
    m = single_label_metrics(scores, labels, ["normal", "abnormal"], threshold=0.3)
    # decided abnormal: .9 .7 .4 .35 -> TP 3, FP 1, TN 2, FN 0
    assert m.confusion_matrix.tolist() == [[2, 1], [0, 3]]
    res = m.results
    assert res["sensitivity/abnormal"] == 100 and res["specificity/abnormal"] == pytest.approx(200 / 3)
    assert res["F2/abnormal"] == pytest.approx(100 * 15 / 16)  # 5 TP / (5 TP + 4 FN + FP)
    assert res["AUC/abnormal"] == pytest.approx(100 * roc_auc_score(labels, scores1))
    assert res["mAUC"] == pytest.approx(res["AUC/abnormal"])  # class 0's score is 1 - class 1's
    assert res["threshold/abnormal"] == 0.3
    # without a threshold arg-max decides (class 1 above .5: .9 and .7)
    assert single_label_metrics(scores, labels, ["normal", "abnormal"]).confusion_matrix.tolist() == [[2, 1], [2, 1]]


def test_threshold_rules_on_a_hand_example():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    targets = [1, 0, 1, 1, 0, 0, 1, 0]
    # F2 by hand: best at 0.3 (TP 4, FP 3: 20/23); Youden: best at 0.6 (TPR .75 - FPR .25)
    assert choose_threshold(scores, targets, "f2") == 0.3
    assert max(_f2_brute_force(scores, targets).values()) == Fraction(20, 23)
    assert choose_threshold(scores, targets, "youden") == 0.6
    assert choose_threshold(scores, targets, "fixed", fixed=0.42) == 0.42
    # ties: the highest threshold wins (Youden .9 and .7 both give .5; F2 .9 and .1 both 5/9)
    assert choose_threshold([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], "youden") == 0.9
    tie_scores = [0.9] + [0.8 - 0.05 * i for i in range(8)] + [0.1]
    tie_targets = [1] + [0] * 8 + [1]
    f2 = _f2_brute_force(tie_scores, tie_targets)
    assert f2[0.9] == f2[0.1] == max(f2.values())
    assert choose_threshold(tie_scores, tie_targets, "f2") == 0.9
    with pytest.raises(ValueError, match="THRESHOLD_RULE"):
        choose_threshold(scores, targets, "max_f1")


def test_f2_threshold_is_the_brute_force_maximum_on_random_data():
    rng = np.random.default_rng(3)
    for trial in range(5):
        targets = (rng.random(60) < 0.3).astype(int)
        scores = np.round(0.3 * targets + 0.7 * rng.random(60), 2)  # with ties
        f2 = _f2_brute_force(scores.tolist(), targets.tolist())
        best = max(f2.values())
        t = choose_threshold(scores, targets, "f2")
        assert f2[t] == best and t == max(k for k, v in f2.items() if v == best)


def test_one_class_label_gives_nan_and_a_warning(caplog):
    scores, targets, weights = _multi_label_data(40)
    targets[:, 1] = 0.0  # Edema: no positive image
    with caplog.at_level("WARNING", logger=LOGGER):
        m = multi_label_metrics(scores, targets, weights, LABELS, [0.5] * 3)
        threshold = choose_threshold(scores[:, 1], targets[:, 1], "f2", fixed=0.5, name="Edema")
    res = m.results
    assert math.isnan(res["AUC/Edema"]) and math.isnan(res["AP/Edema"]) and math.isnan(res["sensitivity/Edema"])
    assert math.isnan(res["F2/Edema"]) and not math.isnan(res["specificity/Edema"])
    assert "'Edema' has only negative images" in caplog.text and "fixed threshold 0.5" in caplog.text
    assert threshold == 0.5
    # macro means leave the undefined label out
    assert res["mAUC"] == pytest.approx((res["AUC/Atelectasis"] + res["AUC/Effusion"]) / 2)


def test_bootstrap_interval_contains_the_point_and_is_seeded():
    scores, targets, weights = _multi_label_data(150)
    point = multi_label_metrics(scores, targets, weights, LABELS, [0.5] * 3).results
    a = bootstrap_auc(scores, targets, weights, LABELS, 300, seed=1)
    assert a == bootstrap_auc(scores, targets, weights, LABELS, 300, seed=1)
    assert a != bootstrap_auc(scores, targets, weights, LABELS, 300, seed=2)
    assert a["mAUC_low"] < point["mAUC"] < a["mAUC_high"] and a["bootstrap_resamples"] == 300
    for name in LABELS:
        assert a[f"AUC_low/{name}"] < point[f"AUC/{name}"] < a[f"AUC_high/{name}"]
    # the resampled AUC is scikit-learn's with the draw counts as sample weights: with one
    # resample drawing every image once it is the point value
    from cxr_det.evaluation.bootstrap import weighted_auc

    keep = weights[:, 0] > 0
    assert weighted_auc(scores[keep, 0], targets[keep, 0] > 0, np.ones((1, keep.sum())))[0] == pytest.approx(
        point["AUC/Atelectasis"] / 100)


def test_bad_inputs_name_the_image():
    records = [{"image_id": 1, "labels": [1, 0, 0], "label_weights": [1, 1, 1]},
               {"image_id": 2, "labels": [1, -1, 0], "label_weights": [1, 1, 1]}]
    good = [{"image_id": 1, "scores": [0.1, 0.2, 0.3]}, {"image_id": 2, "scores": [0.1, 0.2, 0.3]}]
    with pytest.raises(ValueError, match=r"image 2.*Edema.*must be 0 or 1"):
        classification_inputs(records, good, LABELS, "multi_label", "toy")
    with pytest.raises(ValueError, match=r"image 1.*3 finite values"):
        classification_inputs(records[:1], [{"image_id": 1, "scores": [0.1, 0.2]}], LABELS, "multi_label", "toy")
    with pytest.raises(ValueError, match=r"image 7.*class index in \[0, 2\)"):
        classification_inputs([{"image_id": 7, "label": 2}], [{"image_id": 7, "scores": [0.5, 0.5]}], ["a", "b"],
                              "single_label", "toy")


def _register(names, name, records, classes, task):
    names.append(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(thing_classes=list(classes), task=task, evaluator_type="cxr_classification")


def _feed(evaluator, scores, ids):
    evaluator.reset()
    for lo in range(0, len(ids), 16):  # batches, as the inference loop gives them
        inputs = [{"image_id": i, "file_name": f"img{i}.png"} for i in ids[lo:lo + 16]]
        outputs = [{"scores": torch.tensor(scores[i], dtype=torch.float32)} for i in range(lo, min(lo + 16, len(ids)))]
        evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def test_evaluator_writes_its_files_and_carries_thresholds_from_val_to_test(tmp_path, catalog_names, caplog):
    val_scores, val_targets, val_weights = _multi_label_data(80, seed=1)
    test_scores, test_targets, test_weights = _multi_label_data(60, seed=2)
    val_ids, test_ids = list(range(100, 180)), list(range(500, 560))
    val_records = [{"image_id": i, "file_name": f"img{i}.png", "labels": t.tolist(), "label_weights": w.tolist()}
                   for i, t, w in zip(val_ids, val_targets, val_weights)]
    test_records = [{"image_id": i, "file_name": f"img{i}.png", "labels": t.tolist(), "label_weights": w.tolist()}
                    for i, t, w in zip(test_ids, test_targets, test_weights)]
    _register(catalog_names, "cls_toy_val", val_records, LABELS, "multi_label")
    _register(catalog_names, "cls_toy_test", test_records, LABELS, "multi_label")
    cfg = get_cxr_cfg(opts=["OUTPUT_DIR", str(tmp_path / "run"), "DATASETS.TEST", "('cls_toy_val', 'cls_toy_test')",
                            "TEST.CXR_CLS_EVAL.BOOTSTRAP", "40"])

    # without the validation thresholds, the test set chooses its own, with a warning
    with caplog.at_level("WARNING", logger=LOGGER):
        alone = ClassificationEvaluator("cls_toy_test", cfg=cfg, output_dir=None)
        alone_results = _feed(alone, test_scores, test_ids)["classification"]
    assert "no thresholds of cls_toy_val" in caplog.text

    val_eval = build_evaluator(cfg, "cls_toy_val")
    assert isinstance(val_eval, ClassificationEvaluator)
    results = _feed(val_eval, val_scores, val_ids)
    assert list(results) == ["classification"]
    val_res = results["classification"]
    assert all(type(v) is float for v in val_res.values())  # detectron2's EvalHook needs plain floats
    assert {"mAUC", "mAP", "microAUC", "AUC/Edema", "AP/Edema", "F2/Edema", "sensitivity/Edema", "mAUC_low",
            "AUC_high/Edema"} <= set(val_res)
    keep = val_weights[:, 1] > 0
    assert val_res["AUC/Edema"] == pytest.approx(100 * roc_auc_score(val_targets[keep, 1], val_scores[keep, 1]))
    val_dir = tmp_path / "run" / "inference" / "cls_toy_val"
    files = ("metrics.json", "classification_predictions.json", "thresholds.json", "roc_curves.png", "pr_curves.png")
    for name in files:
        assert (val_dir / name).exists(), name
    assert (val_dir / "roc_curves.png").read_bytes()[:8] == PNG
    chosen = read_thresholds(str(val_dir / "thresholds.json"), LABELS, "multi_label")
    for k, name in enumerate(LABELS):  # F2 maximised on validation
        keep = val_weights[:, k] > 0
        assert chosen[name] == choose_threshold(val_scores[keep, k], val_targets[keep, k], "f2")
    rows = json.loads((val_dir / "classification_predictions.json").read_text())
    assert [r["image_id"] for r in rows] == val_ids and rows[0]["file_name"] == "img100.png"
    assert rows[3]["decisions"] == [int(s >= chosen[n]) for s, n in zip(val_scores[3], LABELS)]

    test_eval = build_evaluator(cfg, "cls_toy_test")
    with caplog.at_level("INFO", logger=LOGGER):
        test_res = _feed(test_eval, test_scores, test_ids)["classification"]
    assert "thresholds chosen on cls_toy_val" in caplog.text
    test_dir = tmp_path / "run" / "inference" / "cls_toy_test"
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert metrics["threshold_source"] == "cls_toy_val" and metrics["thresholds"] == chosen
    for k, name in enumerate(LABELS):
        assert test_res[f"threshold/{name}"] == chosen[name]
        keep = test_weights[:, k] > 0
        pred = (test_scores[keep, k] >= chosen[name]).astype(int)
        assert test_res[f"F2/{name}"] == pytest.approx(100 * fbeta_score(test_targets[keep, k], pred, beta=2))
    # the ranking metrics do not depend on where thresholds come from
    assert test_res["mAUC"] == alone_results["mAUC"]
    assert any(alone_results[f"threshold/{n}"] != chosen[n] for n in LABELS)
    assert metrics["counts"]["Edema"]["ignored"] == int((test_weights[:, 1] == 0).sum())

    # tools/evaluate.py on the saved predictions and validation thresholds: the same numbers
    tool = load_tool("evaluate")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        tool_res = tool.main(["--dataset", "cls_toy_test",
                              "--predictions", str(test_dir / "classification_predictions.json"),
                              "--thresholds", str(val_dir / "thresholds.json"), "--output", str(tmp_path / "tool"),
                              "--bootstrap", "40", "--no-plots"])
    assert list(tool_res) == ["classification"] and list(tool_res["classification"]) == list(test_res)
    for key, value in test_res.items():
        other = tool_res["classification"][key]
        assert (math.isnan(value) and math.isnan(other)) or other == pytest.approx(value, abs=1e-9), key
    assert "| Edema" in printed.getvalue() and "thresholds from" in printed.getvalue()
    assert not (tmp_path / "tool" / "roc_curves.png").exists()
    # without --thresholds it chooses them on the predictions, by the rule asked for
    with contextlib.redirect_stdout(io.StringIO()):
        youden = tool.main(["--dataset", "cls_toy_test",
                            "--predictions", str(test_dir / "classification_predictions.json"),
                            "--output", str(tmp_path / "tool2"), "--bootstrap", "0", "--threshold-rule", "youden",
                            "--no-plots"])["classification"]
    keep = test_weights[:, 0] > 0
    assert youden["threshold/Atelectasis"] == choose_threshold(test_scores[keep, 0], test_targets[keep, 0], "youden")
    assert "mAUC_low" not in youden


def test_single_label_evaluator_and_its_confusion_matrix_picture(tmp_path, catalog_names):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 50)
    p1 = np.clip(0.3 * labels + 0.7 * rng.random(50), 0, 1).astype(np.float32).astype(np.float64)
    scores = np.stack([1 - p1, p1], axis=1)
    records = [{"image_id": f"id{i}", "file_name": f"{i}.png", "label": int(y)} for i, y in enumerate(labels)]
    _register(catalog_names, "cls_toy_binary", records, ["normal", "abnormal"], "single_label")
    cfg = get_cxr_cfg(opts=["TEST.CXR_CLS_EVAL.THRESHOLD_RULE", "youden"])
    out = tmp_path / "binary"
    ev = ClassificationEvaluator("cls_toy_binary", cfg=cfg, output_dir=str(out), distributed=False)
    res = _feed(ev, scores, [f"id{i}" for i in range(50)])["classification"]
    t = choose_threshold(p1, labels, "youden")
    assert res["threshold/abnormal"] == t
    decided = (p1 >= t).astype(int)
    assert res["accuracy"] == pytest.approx(100 * np.mean(decided == labels))
    assert res["balanced_accuracy"] == pytest.approx(100 * balanced_accuracy_score(labels, decided))
    assert res["AUC/abnormal"] == pytest.approx(100 * roc_auc_score(labels, p1))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == confusion_matrix(labels, decided).tolist()
    rows = json.loads((out / "classification_predictions.json").read_text())
    assert [r["decision"] for r in rows] == decided.tolist() and rows[0]["image_id"] == "id0"
    assert {r["decision_name"] for r in rows} <= {"normal", "abnormal"}
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="thresholds of a single_label task"):
        read_thresholds(str(out / "thresholds.json"), LABELS, "multi_label")


def test_classification_metrics_over_training_are_drawn_from_metrics_json(tmp_path):
    lines = []
    for it, auc in ((99, 61.0), (199, 70.5), (299, 74.0)):
        lines.append({"iteration": it, "total_loss": 1.0 / (it + 1), "lr": 0.01})
        lines.append({"iteration": it, "classification/mAUC": auc, "classification/mAP": auc - 10,
                      "classification/AUC/Edema": auc + 2, "classification/AUC/Effusion": auc - 3,
                      "classification/F2/Edema": 50.0})
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    written = plot_classification_training_curves(str(path), str(tmp_path / "curves"))
    assert set(written) == {"losses", "metrics", "lr"}
    assert open(written["metrics"], "rb").read(8) == PNG
    figure = training_figures(metric_series(load_metrics(str(path))), CLASSIFICATION_METRIC_PATTERNS)["metrics"]
    panels = {ax.get_title(): sorted(line.get_label() for line in ax.get_lines()) for ax in figure.axes}
    assert panels == {"classification": ["mAP", "mAUC"], "classification/AUC": ["Edema", "Effusion"]}
