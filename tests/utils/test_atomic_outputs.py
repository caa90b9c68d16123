"""Every output a tool writes is atomic (issue 14): a writer that fails, or a process killed
before the new file is complete, leaves the old file whole and no partial one.

The kill is simulated where it matters: the process dies after writing the new content
(to the temporary file) and before it replaces the destination; a writer that wrote the
destination in place would have changed it by then.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import cxr_det  # noqa: F401  (detectron2 compatibility before detectron2)
from detectron2.structures import BoxMode

from cxr_det.utils import atomic
from helpers import load_tool

OLD = b"old content\n"


class Killed(BaseException):
    """The process dying between writing a file's new content and renaming it into place."""


@pytest.fixture
def kill_at_rename(monkeypatch):
    """``kill_at_rename(name)``: moving a finished temporary file onto a file named ``name``
    raises :class:`Killed` instead."""
    names = set()
    replace = os.replace

    def dying_replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) in names:
            raise Killed(dst)
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)
    return names.add


def _assert_old_file_kept(path: Path):
    assert path.read_bytes() == OLD
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ the writers


def _run_record(out):
    from cxr_det.engine.run import RunRecord

    record = RunRecord()
    record.load_state_dict({"format": 1, "class_names": ["A"]})
    record.save(str(out))


def _clinical_stats(out):
    from cxr_det.data.clinical.features import ClinicalFeaturizer

    featurizer = ClinicalFeaturizer(numeric=["age"], categorical=["gender"])
    featurizer.fit([{"age": 50, "gender": "F"}, {"age": 70, "gender": "M"}])
    featurizer.save(out / "clinical_stats.json")


def _records():
    return [
        {"image_id": 11, "height": 64, "width": 64, "annotations": [
            {"bbox": [10, 10, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "area": 400}]},
        {"image_id": 12, "height": 64, "width": 64, "annotations": []},
    ]


def _predictions():
    return [{"image_id": 11, "boxes": np.array([[10.0, 10, 30, 30]]), "scores": np.array([0.9]),
             "classes": np.array([0]), "image_no_finding_score": 0.1}]


def _evaluation_inputs(out):
    from cxr_det.evaluation.coco_files import write_evaluation_inputs

    write_evaluation_inputs(str(out), _predictions(), ["A"], records=_records())


def _detection_report(out):
    from cxr_det.evaluation.core import evaluate_detections
    from cxr_det.evaluation.options import EvalOptions

    evaluate_detections(_records(), _predictions(), ["A"], EvalOptions(protocols=("coco",), plots=False),
                        output_dir=str(out))


def _classification_report(out):
    from cxr_det.evaluation.classification import classification_inputs, evaluate_classification

    records = [{"image_id": i, "labels": [i % 2, 1 - i % 2], "label_weights": [1, 1]} for i in range(6)]
    predictions = [{"image_id": i, "scores": [0.2 + 0.1 * i, 0.7 - 0.1 * i]} for i in range(6)]
    inputs = classification_inputs(records, predictions, ["Edema", "Effusion"], "multi_label", "toy")
    evaluate_classification(inputs, output_dir=str(out), plots=False, dataset_name="toy")


def _prediction_summary(out, records=({"image": "a.png", "instances": []},)):
    from cxr_det.engine.inference import InputImage
    from cxr_det.engine.predict_files import ClinicalCheck, write_outputs

    write_outputs(str(out), [InputImage("a.png", Path("a.png"))], list(records), {}, ClinicalCheck(), [])


def _training_curves(out):
    from cxr_det.utils.training_curves import plot_training_curves

    metrics = out / "curves_input.json"
    metrics.write_text("".join(json.dumps({"iteration": i, "total_loss": 1.0 / (i + 1)}) + "\n" for i in range(3)))
    plot_training_curves(str(metrics), str(out))


def _drawing(out):
    from cxr_det.utils.drawing_files import write_png

    write_png(str(out / "drawing.png"), np.zeros((8, 8, 3), np.uint8))


WRITERS = [
    (_run_record, "run.json"),
    (_clinical_stats, "clinical_stats.json"),
    (_evaluation_inputs, "ground_truth_coco.json"),
    (_evaluation_inputs, "coco_instances_results.json"),
    (_evaluation_inputs, "cxr_eval_no_finding_scores.json"),
    (_detection_report, "metrics.json"),
    (_detection_report, "per_class.csv"),
    (_classification_report, "metrics.json"),
    (_classification_report, "classification_predictions.json"),
    (_classification_report, "thresholds.json"),
    (_prediction_summary, "predictions.json"),
    (_prediction_summary, "summary.json"),
    (_training_curves, "training_losses.png"),
    (_drawing, "drawing.png"),
]


@pytest.mark.parametrize("write, name", WRITERS, ids=[f"{w.__name__[1:]}-{n}" for w, n in WRITERS])
def test_a_kill_before_the_new_file_is_complete_leaves_the_old_one(tmp_path, kill_at_rename, write, name):
    write(tmp_path)  # writes for real: the writer produces this file
    produced = (tmp_path / name).read_bytes()
    assert produced and produced != OLD
    (tmp_path / name).write_bytes(OLD)
    kill_at_rename(name)
    with pytest.raises(Killed):
        write(tmp_path)
    _assert_old_file_kept(tmp_path / name)


def test_truncating_metrics_when_killed_leaves_the_old_file(tmp_path, kill_at_rename):
    from cxr_det.engine.run_folder import truncate_metrics

    path = tmp_path / "metrics.json"
    old = "".join(json.dumps({"iteration": i}) + "\n" for i in (19, 39)).encode()
    path.write_bytes(old)
    kill_at_rename("metrics.json")
    with pytest.raises(Killed):
        truncate_metrics(str(path), 20)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["metrics.json"]


def test_convert_to_coco_writes_its_output_atomically(tiny_reflacx, tmp_path, kill_at_rename, monkeypatch):
    tool = load_tool("convert_to_coco")
    output = tmp_path / "val.json"
    monkeypatch.setattr(sys, "argv", ["convert_to_coco.py", "--dataset", "reflacx", "--root", str(tiny_reflacx),
                                      "--split", "val", "--output", str(output)])
    tool.main()
    assert json.loads(output.read_text())["images"]
    output.write_bytes(OLD)
    kill_at_rename("val.json")
    with pytest.raises(Killed):
        tool.main()
    _assert_old_file_kept(output)


# ------------------------------------------------------------------ failing writers


def test_unserialisable_ground_truth_keeps_the_old_file(tmp_path):
    from cxr_det.evaluation.coco_files import GROUND_TRUTH_FILE, write_evaluation_inputs

    (tmp_path / GROUND_TRUTH_FILE).write_bytes(OLD)
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        write_evaluation_inputs(str(tmp_path), [], ["A"], coco_gt={"images": [object()]})
    _assert_old_file_kept(tmp_path / GROUND_TRUTH_FILE)


def test_prediction_with_nan_keeps_the_old_predictions_file(tmp_path):
    (tmp_path / "predictions.json").write_bytes(OLD)
    with pytest.raises(ValueError, match="Out of range float values"):
        _prediction_summary(tmp_path, records=[{"image": "a.png", "instances": [{"score": float("nan")}]}])
    _assert_old_file_kept(tmp_path / "predictions.json")


def test_unserialisable_run_record_keeps_the_old_run_json(tmp_path):
    from cxr_det.engine.run import RunRecord

    (tmp_path / "run.json").write_bytes(OLD)
    record = RunRecord()
    record.load_state_dict({"format": 1, "config": {1, 2}})
    with pytest.raises(TypeError):
        record.save(str(tmp_path))
    _assert_old_file_kept(tmp_path / "run.json")


def test_png_that_cannot_be_encoded_is_an_error_and_keeps_the_old_file(tmp_path):
    from cxr_det.utils.drawing_files import write_png

    (tmp_path / "x.png").write_bytes(OLD)
    with pytest.raises(ValueError, match="x.png: OpenCV could not encode"):
        write_png(str(tmp_path / "x.png"), np.zeros((4, 4, 3), np.complex64))
    _assert_old_file_kept(tmp_path / "x.png")
