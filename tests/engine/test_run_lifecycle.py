"""A trained run describes itself; loading is strict; mistakes stop before training;
interrupted runs save and resume cleanly (issue 9). Each test walks the user's path through
tools/train_net.py on synthetic REFLACX."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cxr_det  # noqa: F401
from cxr_det.synthetic import make_reflacx
from cxr_det.engine import (
    CheckpointMismatchError,
    DatasetCheckError,
    RunConfigError,
    argument_parser,
    inference_config,
)
from cxr_det.engine.run_folder import truncate_metrics
from helpers import SMALL_TRAIN_OPTS, load_tool

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"
CLINICAL_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"
SMALL = SMALL_TRAIN_OPTS


def _train_net():
    return load_tool("train_net")


def _run(argv):
    return _train_net().main(argument_parser().parse_args([str(a) for a in argv]))


def _opts(root, out, iters=3, extra=()):
    return ["CXR.DATASET_ROOT", str(root), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", str(iters),
            "SOLVER.CHECKPOINT_PERIOD", "1000", *SMALL, *extra]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr")
    make_reflacx(root, 30, seed=3, size=160)
    return root


@pytest.fixture(scope="module")
def clinical_run(synthetic_root, tmp_path_factory):
    """A 3-iteration clinical training run (its OUTPUT_DIR)."""
    out = tmp_path_factory.mktemp("runs") / "clinical"
    _run(["--config-file", CLINICAL_CONFIG, *_opts(synthetic_root, out)])
    return out


# ------------------------------------------------------------------ a run describes itself


def test_checkpoint_and_output_dir_carry_the_run_record(clinical_run):
    state = torch.load(clinical_run / "model_final.pth", map_location="cpu", weights_only=True)
    record = state["cxr_run"]
    assert record["class_names"][:2] == ["Enlarged cardiac silhouette", "Atelectasis"]
    assert record["clinical"]["enabled"] and record["clinical"]["categorical_sizes"]
    assert "ClinicalGeneralizedRCNN" in record["config"]
    assert "image_frame" in record and "clinical_featurizer" in state
    on_disk = json.loads((clinical_run / "run.json").read_text())
    assert on_disk["class_names"] == record["class_names"]


def test_repo_config_with_checkpoint_takes_the_checkpoints_vocabulary(clinical_run):
    # The repository config leaves CATEGORICAL_SIZES empty: before, the model got 8 gender
    # embeddings, the checkpoint had 3, and the embedding stayed random (issue 9, first finding).
    cfg = inference_config(config_file=str(CLINICAL_CONFIG), opts=["MODEL.WEIGHTS", str(clinical_run / "model_final.pth")])
    record = json.loads((clinical_run / "run.json").read_text())
    assert list(cfg.CXR.CLINICAL.CATEGORICAL_SIZES) == record["clinical"]["categorical_sizes"]
    assert cfg.CXR.MOBILENET.PRETRAINED is False


def test_predictions_are_reproducible_from_the_run(clinical_run):
    from cxr_det.engine.predictor import CXRPredictor

    image = (torch.rand(160, 160, 3) * 255).to(torch.uint8).numpy()
    record = {"age": 70, "gender": "F", "temperature": 39.0, "heartrate": 120}
    scores = []
    for _ in range(2):
        cfg = inference_config(config_file=str(CLINICAL_CONFIG),
                               opts=["MODEL.WEIGHTS", str(clinical_run / "model_final.pth"),
                                     "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
        out = CXRPredictor(cfg)(image, record)["instances"]
        scores.append(out.scores.tolist())
    assert scores[0] == scores[1]


def test_override_contradicting_the_checkpoint_is_an_error(clinical_run):
    with pytest.raises(RunConfigError, match="MODEL.ROI_HEADS.NUM_CLASSES 14 .*trained with 5"):
        inference_config(run=str(clinical_run), opts=["MODEL.ROI_HEADS.NUM_CLASSES", "14"])


def test_no_weights_at_inference_is_an_error():
    with pytest.raises(RunConfigError, match="no trained weights"):
        inference_config(config_file=str(DEMO_CONFIG))


def test_checkpoint_without_record_that_does_not_fit_is_an_error(clinical_run, tmp_path):
    # A foreign checkpoint (no run record) with the image-only config: 138 "Skip loading"
    # warnings and AP 0 before; now an error naming the parameters and the cause.
    state = torch.load(clinical_run / "model_final.pth", map_location="cpu", weights_only=True)
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": state["model"]}, foreign)
    cfg = inference_config(config_file=str(DEMO_CONFIG), opts=["MODEL.WEIGHTS", str(foreign), *SMALL])
    from cxr_det.engine import CXRCheckpointer, Trainer

    model = Trainer.build_model(cfg)
    with pytest.raises(CheckpointMismatchError, match="clinical"):
        CXRCheckpointer(model).load(str(foreign))


def test_eval_only_from_the_run_alone_matches_training_and_keeps_its_config(clinical_run, synthetic_root):
    trained = json.loads((clinical_run / "inference/reflacx_val/metrics.json").read_text())["results"]
    config_before = (clinical_run / "config.yaml").read_text()
    # Another test size at evaluation must not rewrite the training record.
    _run(["--eval-only", "--run", clinical_run, "CXR.DATASET_ROOT", synthetic_root])
    again = json.loads((clinical_run / "inference/reflacx_val/metrics.json").read_text())["results"]
    assert again == trained
    _run(["--eval-only", "--run", clinical_run, "CXR.DATASET_ROOT", synthetic_root, "INPUT.MIN_SIZE_TEST", "96"])
    assert (clinical_run / "config.yaml").read_text() == config_before
    assert "MIN_SIZE_TEST: 96" in (clinical_run / "inference/config.yaml").read_text()


# ------------------------------------------------------------------ fail before training


def test_unknown_test_dataset_fails_before_the_model_is_built(synthetic_root, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(DatasetCheckError) as err:
        _run(["--config-file", DEMO_CONFIG, *_opts(synthetic_root, out, extra=["DATASETS.TEST", "('reflacx_vall',)"])])
    message = str(err.value)
    assert "reflacx_vall" in message and "reflacx_val" in message and len(message) < 600
    assert not (out / "model_final.pth").exists()


def test_missing_dataset_root_says_so(tmp_path):
    with pytest.raises(DatasetCheckError, match="does not exist"):
        _run(["--config-file", DEMO_CONFIG, *_opts(tmp_path / "no_such_root", tmp_path / "out")])


def test_vindr_test_on_the_kaggle_copy_fails_before_training(tmp_path):
    from cxr_det.synthetic import make_vindr

    make_vindr(tmp_path / "data", 12, seed=0, layout="kaggle", size=96)
    config = ROOT / "configs/VinDr/faster_rcnn_R_50_FPN_14cls.yaml"
    with pytest.raises(DatasetCheckError, match="vindr_test.*no test labels"):
        _run(["--config-file", config, *_opts(tmp_path / "data", tmp_path / "out", extra=[
            "MODEL.WEIGHTS", "", "DATASETS.TEST", "('vindr_test',)"])])


# ------------------------------------------------------------------ interrupt and resume


def test_sigint_saves_a_checkpoint_and_resume_continues_there(synthetic_root, tmp_path):
    out = tmp_path / "interrupted"
    argv = [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", str(DEMO_CONFIG),
            *_opts(synthetic_root, out, iters=2000, extra=["TEST.EVAL_PERIOD", "0"])]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.time() + 240
    for line in proc.stdout:
        lines.append(line)
        if "Starting training from iteration" in line:
            break
        assert time.time() < deadline, "".join(lines[-20:])
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    log = "".join(lines) + rest
    assert proc.returncode == 130, log[-3000:]
    assert "Traceback" not in log
    assert "checkpoint saved to" in log
    # The printed command resumes as printed: --resume before the KEY VALUE overrides.
    command = log.split("Resume with:")[1].strip().splitlines()[0]
    import shlex

    words = shlex.split(command)
    assert words[0] == sys.executable and words[1].endswith("train_net.py")
    parsed = argument_parser().parse_args(words[2:])
    assert parsed.resume and parsed.opts == [str(a) for a in argv[4:]]
    tag = (out / "last_checkpoint").read_text().strip()
    saved_at = int(tag.split("_")[1].split(".")[0])
    assert (out / tag).is_file() and saved_at >= 0

    from cxr_det.engine import Trainer, setup

    args = argument_parser().parse_args(["--config-file", str(DEMO_CONFIG), "--resume",
                                        *_opts(synthetic_root, out, iters=saved_at + 3)])
    trainer = Trainer(setup(args))
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == saved_at + 1
    trainer.train()
    its = [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines()]
    assert its == sorted(set(its)), its


def test_resume_after_a_kill_drops_the_killed_runs_later_metrics(synthetic_root, tmp_path):
    """A killed run (no save at the signal) resumes from its last periodic checkpoint; the
    metrics it logged past that point are dropped, so metrics.json holds one run."""
    from detectron2.engine import HookBase

    from cxr_det.engine import Trainer, setup

    out = tmp_path / "killed"

    class Killed(BaseException):
        pass

    class KillAt(HookBase):
        def after_step(self):
            if self.trainer.iter == 7:
                raise Killed()

    extra = ["SOLVER.CHECKPOINT_PERIOD", "5", "TEST.EVAL_PERIOD", "0"]
    args = argument_parser().parse_args(["--config-file", str(DEMO_CONFIG), *_opts(synthetic_root, out, iters=12),
                                        *extra])
    trainer = Trainer(setup(args))
    trainer.register_hooks([KillAt()])
    trainer.resume_or_load(resume=False)
    with pytest.raises(Killed):
        trainer.train()
    before = [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines()]
    assert max(before) >= 7  # the killed run logged past its checkpoint at iteration 4

    args = argument_parser().parse_args(["--config-file", str(DEMO_CONFIG), "--resume",
                                        *_opts(synthetic_root, out, iters=12), *extra])
    trainer = Trainer(setup(args))
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 5
    trainer.train()
    its = [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines()]
    # The killed run's line at iteration 7 is gone; the resumed run's lines follow in order.
    assert 7 in before and 7 not in its and its == sorted(set(its)) and max(its) >= 11, its


def test_truncate_metrics_keeps_lines_before_the_resume_point(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("".join(json.dumps({"iteration": i, "loss": 1.0}) + "\n" for i in (19, 39, 45)) + "not json\n")
    assert truncate_metrics(str(path), 40) == 1
    assert [line for line in path.read_text().splitlines()] == [
        json.dumps({"iteration": 19, "loss": 1.0}), json.dumps({"iteration": 39, "loss": 1.0}), "not json"]


def test_a_new_run_sets_the_previous_one_aside(synthetic_root, tmp_path):
    out = tmp_path / "twice"
    _run(["--config-file", DEMO_CONFIG, *_opts(synthetic_root, out, iters=2)])
    first = (out / "model_final.pth").read_bytes()
    _run(["--config-file", DEMO_CONFIG, *_opts(synthetic_root, out, iters=3)])
    previous = list((out / "previous_runs").iterdir())
    assert len(previous) == 1
    assert (previous[0] / "model_final.pth").read_bytes() == first
    its = [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines()]
    assert its == [2, 3]  # the earlier 2-iteration run logged iterations 1 and 2


def test_training_curves_plot_the_last_of_several_runs_in_one_metrics_file(tmp_path):
    # Before: iterations 19, 39, 59 of one run, then 19, 39 of a new one, plotted as one curve.
    from cxr_det.utils.training_curves import load_metrics, metric_series

    path = tmp_path / "metrics.json"
    lines = [{"iteration": i, "total_loss": 5.0} for i in (19, 39, 59)] + \
            [{"iteration": i, "total_loss": 1.0} for i in (19, 39)] + [{"iteration": 35, "total_loss": 0.5},
                                                                         {"iteration": 59, "total_loss": 0.4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    series = metric_series(load_metrics(str(path)))
    # The second run was itself resumed at 35: its later line wins at 39's neighbour, no 5.0 left.
    assert series["total_loss"] == ([19, 35, 39, 59], [1.0, 0.5, 1.0, 0.4])


def test_two_identical_short_runs_give_identical_metrics(synthetic_root, tmp_path):
    """Guard for the README's figures: training on CPU is deterministic, so a figure that a
    command printed is the figure that command prints again."""
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        _run(["--config-file", DEMO_CONFIG, *_opts(synthetic_root, out, iters=4)])
        results.append(json.loads((out / "inference/reflacx_val/metrics.json").read_text())["results"])
        losses = [json.loads(line).get("total_loss") for line in (out / "metrics.json").read_text().splitlines()]
        results.append(losses)
    assert results[0] == results[2] and results[1] == results[3]


def test_visualize_json_results_refuses_predictions_of_another_image_frame(tmp_path, monkeypatch):
    # Before: predictions made on the 256-pixel PNG cache were drawn on the full DICOM, silently.
    from cxr_det.engine import RunRecord, get_cxr_cfg

    config = ROOT / "configs/VinDr/retinanet_R_50_FPN_14cls.yaml"
    trained = get_cxr_cfg(str(config), ["CXR.VINDR.IMAGE_CACHE", "png_256"])
    run = tmp_path / "run"
    RunRecord(trained, ["Aortic enlargement"]).save(str(run))
    results = run / "inference/vindr_val/coco_instances_results.json"
    results.parent.mkdir(parents=True)
    results.write_text("[]")
    tool = load_tool("visualize_json_results")
    monkeypatch.setattr(sys, "argv", ["vis", "--input", str(results), "--dataset", "vindr_val", "--output",
                                      str(tmp_path / "pics"), "--config-file", str(config)])
    with pytest.raises(SystemExit, match="CXR.VINDR.IMAGE_CACHE 'png_256'"):
        tool.main()


def test_data_tools_do_not_warn_about_the_models_device(synthetic_root, tmp_path):
    # Before: converting or drawing data with a GPU config warned "MODEL.DEVICE=cuda but CUDA is
    # not available" although no model is built.
    config = ROOT / "configs/REFLACX/faster_rcnn_R_50_FPN.yaml"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/convert_to_coco.py"), "--dataset", "reflacx", "--split", "val",
         "--config-file", str(config), "--output", str(tmp_path / "val.json")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, CXR_DATASETS=str(synthetic_root)))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "CUDA" not in run.stdout + run.stderr and "FutureWarning" not in run.stderr
    assert "VinDr" not in run.stdout + run.stderr


def test_eval_only_finds_the_runs_dataset_root_without_the_environment(synthetic_root, tmp_path, monkeypatch):
    # Before: --eval-only --run failed on reflacx_train without CXR_DATASETS, although the run
    # had recorded where its data was and evaluation does not read the training split.
    monkeypatch.setenv("CXR_DATASETS", str(synthetic_root))
    out = tmp_path / "run"
    opts = [o for o in _opts(synthetic_root, out, iters=2)]
    del opts[0:2]  # no CXR.DATASET_ROOT: the root comes from the environment
    _run(["--config-file", DEMO_CONFIG, *opts])
    assert json.loads((out / "run.json").read_text())["dataset_root"] == str(Path(synthetic_root).resolve())
    monkeypatch.delenv("CXR_DATASETS")
    results = _run(["--eval-only", "--run", out])
    assert "bbox" in results


def test_sigterm_from_a_cluster_saves_and_exits_143_with_data_loader_workers(synthetic_root, tmp_path):
    """What a pre-empting scheduler sends; the data loader's worker processes (2 here) must
    not die mid-batch and take the main process down with them."""
    out = tmp_path / "preempted"
    opts = _opts(synthetic_root, out, iters=2000, extra=["TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "2"])
    argv = [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", str(DEMO_CONFIG), *opts]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Starting training from iteration" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    log = "".join(lines) + rest
    assert proc.returncode == 143, log[-3000:]
    assert "SIGTERM received" in log and "checkpoint saved to" in log and "Traceback" not in log
    assert (out / (out / "last_checkpoint").read_text().strip()).is_file()


def test_a_root_one_level_too_high_gets_the_right_root_suggested(synthetic_root, tmp_path):
    # A new user makes the synthetic data in datasets/synthetic and leaves the default ./datasets.
    with pytest.raises(DatasetCheckError, match="did you mean CXR_DATASETS=.*"):
        _run(["--config-file", DEMO_CONFIG, *_opts(synthetic_root.parent, tmp_path / "out")])


def _metrics_lines(writer_class, path):
    """Write scalars of iterations 15 and 16 in one write, the first-logged key at the later
    iteration (as at the end of an interrupted run); return the iterations in file order."""
    from detectron2.utils.events import EventStorage

    with EventStorage(start_iter=15) as storage:
        storage.put_scalar("total_loss", 1.0, smoothing_hint=False)
        storage.put_scalar("data_time", 0.1, smoothing_hint=False)
        storage.iter = 16
        storage.put_scalar("total_loss", 0.9, smoothing_hint=False)  # keeps its first place in the dict
        writer = writer_class(str(path))
        writer.write()
        writer.close()
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines()]


def test_metrics_lines_are_in_iteration_order(tmp_path):
    from detectron2.utils.events import JSONWriter

    from cxr_det.engine.interrupt import OrderedJSONWriter

    # detectron2 0.6 writes in the order the keys were first logged: the case this guards against
    assert _metrics_lines(JSONWriter, tmp_path / "stock.json") == [16, 15]
    assert _metrics_lines(OrderedJSONWriter, tmp_path / "ours.json") == [15, 16]
    lines = [json.loads(line) for line in (tmp_path / "ours.json").read_text().splitlines()]
    assert lines == [{"data_time": 0.1, "iteration": 15}, {"total_loss": 0.9, "iteration": 16}]
