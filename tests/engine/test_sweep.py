"""tools/sweep.py: grid expansion and run names, sweep files checked against the config before
anything runs, local sweeps that resume failed and interrupted runs and skip finished ones,
the submitit job-array path through submitit's local and debug executors, and collection
into results.csv / results.md / results.png.

Most runs use a stand-in training script (FAKE_TRAIN: train_net's arguments, files shaped
like a run's, in milliseconds); one sweep trains the demo config through tools/train_net.py.
"""
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest
import yaml

import cxr_det  # noqa: F401
from cxr_det.config import get_cxr_cfg
from cxr_det.engine.sweep import (
    RUN_RECORD_FILE,
    SweepConfigError,
    TrainJob,
    collect,
    command_value,
    expand_grid,
    load_sweep,
    parse_sweep,
    read_run_metrics,
    run_local,
    run_names,
    run_state,
    submit,
    train_command,
    write_results,
)
from helpers import DEMO_CONFIG, ROOT, SMALL_TRAIN_OPTS, load_tool

# train_net's command line; writes what a run writes. AP50 = 100 * BASE_LR + SEED. With
# $FAKE_FAIL naming the run folder, the first attempt saves a checkpoint and fails, and a
# later attempt without --resume is an error (exit 3). With $FAKE_WAIT_SIGTERM it waits for
# SIGTERM, then saves a checkpoint and exits 143 as train_net does.
FAKE_TRAIN = r'''
import argparse, json, os, signal, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--config-file")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--num-gpus", type=int, default=1)
parser.add_argument("opts", nargs=argparse.REMAINDER)
args = parser.parse_args()
kv = dict(zip(args.opts[0::2], args.opts[1::2]))
out = kv["OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"resume": args.resume, "num_gpus": args.num_gpus, "opts": args.opts}) + "\n")

def save_checkpoint():
    open(os.path.join(out, "model_0000001.pth"), "w").write("checkpoint")
    open(os.path.join(out, "last_checkpoint"), "w").write("model_0000001.pth")

name = os.path.basename(out)
if os.environ.get("FAKE_WAIT_SIGTERM") and not args.resume:
    def stop(signum, frame):
        save_checkpoint()
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    open(os.path.join(out, "started"), "w").write("")
    time.sleep(60)
    sys.exit(1)
if os.environ.get("FAKE_FAIL") == name and not os.path.exists(os.path.join(out, "failed_before")):
    save_checkpoint()
    open(os.path.join(out, "failed_before"), "w").write("")
    print("RuntimeError: simulated failure of " + name, file=sys.stderr)
    sys.exit(1)
if os.path.exists(os.path.join(out, "failed_before")) and not args.resume:
    sys.exit(3)
lr, seed = float(kv["SOLVER.BASE_LR"]), int(kv.get("SEED", 0))
open(os.path.join(out, "model_final.pth"), "w").write("final")
os.makedirs(os.path.join(out, "inference", "reflacx_val"), exist_ok=True)
with open(os.path.join(out, "inference", "reflacx_val", "metrics.json"), "w") as f:
    json.dump({"results": {"bbox": {"AP50": 100 * lr + seed, "AP": lr}, "froc": {"CPM": None}}, "num_images": 3}, f)
with open(os.path.join(out, "metrics.json"), "a") as f:
    f.write(json.dumps({"iteration": 1, "total_loss": 2.0, "classification/mAUC": 0.25}) + "\n")
    f.write(json.dumps({"iteration": 2, "total_loss": 1.0, "classification/mAUC": 0.5 + seed / 10}) + "\n")
'''


@pytest.fixture
def fake_train(tmp_path):
    path = tmp_path / "fake_train_net.py"
    path.write_text(FAKE_TRAIN)
    return path


def _sweep_file(tmp_path, **changes):
    data = {
        "config": str(DEMO_CONFIG),
        "output_dir": str(tmp_path / "sweep"),
        "overrides": {"SOLVER.MAX_ITER": 3},
        "grid": {"SOLVER.BASE_LR": [0.01, 0.02], "SEED": [0, 1]},
        "metrics": ["bbox/AP50", "classification/mAUC"],
    }
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _calls(run):
    path = Path(run.output_dir) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _record(run):
    return json.loads((Path(run.output_dir) / RUN_RECORD_FILE).read_text())


# ----------------------------------------------------------------------------- expansion and names


def test_grid_expands_to_named_runs_whose_overrides_merge_into_the_config(tmp_path):
    data = {
        "config": str(DEMO_CONFIG),
        "output_dir": str(tmp_path / "sw"),
        "overrides": {"SOLVER.MAX_ITER": 3, "INPUT.MIN_SIZE_TRAIN": [128, 160]},
        "grid": {"SOLVER.BASE_LR": [0.01, 0.02], "CXR.FUSION.SPATIAL": ["none", "film"], "SEED": [0, 1]},
    }
    sweep = parse_sweep(data, "s.yaml")
    assert [r.name for r in sweep.runs] == [
        f"BASE_LR={lr},SPATIAL={sp},SEED={seed}" for lr in ("0.01", "0.02") for sp in ("none", "film") for seed in (0, 1)]
    assert [r.name for r in parse_sweep(data, "s.yaml").runs] == [r.name for r in sweep.runs]  # deterministic
    run = sweep.runs[5]
    assert run.values == {"SOLVER.BASE_LR": 0.02, "CXR.FUSION.SPATIAL": "none", "SEED": 1}
    assert run.opts == ("SOLVER.MAX_ITER", "3", "INPUT.MIN_SIZE_TRAIN", "[128, 160]",
                        "SOLVER.BASE_LR", "0.02", "CXR.FUSION.SPATIAL", "none", "SEED", "1")
    assert run.output_dir == str(tmp_path / "sw" / run.name)
    assert run.test_datasets == ("reflacx_val",) and sweep.metrics == ["bbox/AP50"]  # the config's BEST_METRIC
    cfg = get_cxr_cfg(str(DEMO_CONFIG), list(run.opts))  # the words yacs reads back are the values
    assert (cfg.SOLVER.BASE_LR, cfg.CXR.FUSION.SPATIAL, cfg.SEED, cfg.SOLVER.MAX_ITER) == (0.02, "none", 1, 3)
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (128, 160)
    assert train_command(run, ["py", "train.py"], sweep.config, num_gpus=2, resume=True) == [
        "py", "train.py", "--config-file", sweep.config, "--resume", "--num-gpus", "2", *run.opts,
        "OUTPUT_DIR", run.output_dir]
    assert "--num-gpus" not in train_command(run, ["py", "t.py"], sweep.config)


def test_names_keys_and_values():
    assert expand_grid({}) == [{}] and run_names([{}]) == ["run"]  # no grid: one run
    both = expand_grid({"MODEL.RETINANET.NUM_CLASSES": [3], "MODEL.ROI_HEADS.NUM_CLASSES": [5], "SEED": [0]})
    assert run_names(both) == ["RETINANET.NUM_CLASSES=3,ROI_HEADS.NUM_CLASSES=5,SEED=0"]
    assert run_names(expand_grid({"A.LR": [1e-05, 0.5], "B.X": [[640, 800]], "C.S": ["a/b c"], "D.F": [True]})) == [
        "LR=1e-05,X=640-800,S=a-b-c,F=True", "LR=0.5,X=640-800,S=a-b-c,F=True"]
    with pytest.raises(SweepConfigError, match="same run name 'TRAIN=a-b'"):
        run_names(expand_grid({"DATASETS.TRAIN": ["a/b", "a b"]}))
    long = run_names(expand_grid({"DATASETS.TRAIN": ["x" * 400, "x" * 401]}))
    assert all(len(n) == 150 for n in long) and long[0] != long[1]
    assert [command_value(v) for v in (True, 0.01, 3, "film", [0.5, 1], ["p3", "p4"], None)] == [
        "True", "0.01", "3", "film", "[0.5, 1]", "['p3', 'p4']", "None"]
    with pytest.raises(SweepConfigError, match="cannot be a config value"):
        command_value({"a": 1})


@pytest.mark.parametrize("changes, message", [
    ({"gird": {}}, r"unknown key 'gird' \(did you mean 'grid'\?\)"),
    ({"config": "configs/nope.yaml"}, "config configs/nope.yaml: file not found"),
    ({"grid": {"SOLVER.BASE_LRR": [0.1]}}, r"grid SOLVER.BASE_LRR: SOLVER has no key 'BASE_LRR' \(did you mean 'BASE_LR'\?\)"),
    ({"overrides": {"CXR.FUSIN.SPATIAL": "film"}}, r"overrides CXR.FUSIN.SPATIAL: CXR has no key 'FUSIN' \(did you mean 'FUSION'\?\)"),
    ({"grid": {"SOLVER.CHECKPOINT_PERIOD": ["many"]}}, r"run CHECKPOINT_PERIOD=many: its overrides do not fit .*Type mismatch.*SOLVER.CHECKPOINT_PERIOD"),
    ({"grid": {"SEED": 3}}, "grid SEED: give a non-empty list"),
    ({"grid": {"SEED": [1, 1]}}, "repeat one"),
    ({"overrides": {"SEED": 0}, "grid": {"SEED": [0, 1]}}, "SEED both in overrides and in grid"),
    ({"grid": {"OUTPUT_DIR": ["a", "b"]}}, "OUTPUT_DIR is set by the sweep"),
    ({"metrics": [3]}, "metrics must be a list"),
    ({"num_gpus": 0}, "num_gpus must be a positive integer"),
    ({"slurm": {"partitio": "gpu"}}, r"slurm: unknown parameter 'partitio' \(did you mean 'partition'\?\)"),
    ({"slurm": {"nodes": 2}}, "nodes 2: a run is one train_net process per node"),
    ({"slurm": {"gpus_per_node": 2}, "num_gpus": 1}, "num_gpus 1 differs from slurm gpus_per_node 2"),
])
def test_bad_sweep_files_are_reported_before_any_run(tmp_path, fake_train, changes, message):
    path = _sweep_file(tmp_path, **changes)
    with pytest.raises(SweepConfigError, match=message):
        load_sweep(path)
    assert load_tool("sweep").main([str(path), "--train-script", str(fake_train)]) == 2
    assert not (tmp_path / "sweep").exists()  # nothing ran, nothing written


def test_unreadable_files_and_the_example_sweep(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(SweepConfigError, match="not valid YAML"):
        load_sweep(bad)
    with pytest.raises(SweepConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "none.yaml")
    # The shipped example checks against its config; --dry-run lists its runs and runs nothing.
    example = ROOT / "configs/sweeps/demo_clinical_lr_fusion.yml"
    sweep = load_sweep(example, output_dir=str(tmp_path / "ex"))
    assert len(sweep.runs) == 8 and sweep.runs[0].name == "BASE_LR=0.01,SPATIAL=none,SEED=0"
    tool = load_tool("sweep")
    assert tool.main([str(example), "--output-dir", str(tmp_path / "ex"), "--dry-run", "--executor", "slurm"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": start\n") == 8 and "'slurm_partition': 'gpu'" in printed
    assert not (tmp_path / "ex").exists()


# ----------------------------------------------------------------------------- running here


def test_local_sweep_resumes_failed_runs_skips_finished_ones_and_collects(tmp_path, fake_train, monkeypatch):
    path = _sweep_file(tmp_path)
    sweep = load_sweep(path)
    failing = "BASE_LR=0.02,SEED=1"
    monkeypatch.setenv("FAKE_FAIL", failing)
    outcomes = run_local(sweep, [sys.executable, str(fake_train)], parallel=2)
    assert {o["name"]: o["status"] for o in outcomes} == {
        "BASE_LR=0.01,SEED=0": "finished", "BASE_LR=0.01,SEED=1": "finished",
        "BASE_LR=0.02,SEED=0": "finished", failing: "failed"}
    runs = {r.name: r for r in sweep.runs}
    assert _record(runs[failing])["status"] == "failed" and _record(runs[failing])["returncode"] == 1
    assert "simulated failure" in (Path(runs[failing].output_dir) / "sweep_job.log").read_text()
    assert run_state(runs[failing]) == "resume"
    frame = collect(sweep)
    assert frame.set_index("run").loc[failing, "status"] == "failed"
    assert math.isnan(frame.set_index("run").loc[failing, "bbox/AP50"])

    tool = load_tool("sweep")
    assert tool.main([str(path), "--train-script", str(fake_train)]) == 0
    for name, run in runs.items():
        calls = _calls(run)
        if name == failing:  # re-run once, continuing from its checkpoint
            assert [c["resume"] for c in calls] == [False, True]
            assert _record(run)["attempts"] == 2 and _record(run)["status"] == "finished"
        else:  # finished: not run again
            assert len(calls) == 1
    assert tool.main([str(path), "--train-script", str(fake_train)]) == 0
    assert sum(len(_calls(r)) for r in sweep.runs) == 5  # the third pass ran nothing

    results = pd.read_csv(tmp_path / "sweep/results.csv")
    assert list(results.columns[:6]) == ["run", "status", "SOLVER.BASE_LR", "SEED", "bbox/AP50", "classification/mAUC"]
    assert {"bbox/AP", "froc/CPM"} <= set(results.columns)
    for row in results.to_dict("records"):
        assert row["status"] == "finished"
        assert row["bbox/AP50"] == pytest.approx(100 * row["SOLVER.BASE_LR"] + row["SEED"])
        assert row["classification/mAUC"] == pytest.approx(0.5 + row["SEED"] / 10)  # metrics.json's last line
    assert results["froc/CPM"].isna().all()  # null in metrics.json
    markdown = (tmp_path / "sweep/results.md").read_text()
    assert "| BASE_LR=0.02,SEED=1 | finished | 0.02 | 1 | 3 | 0.6 |" in markdown
    assert "### SEED" in markdown and "| 1 | 2 | 2.5 | 0.7071 | 0.6 | 0 |" in markdown  # SEED=1: AP50 2 and 3
    png = cv2.imread(str(tmp_path / "sweep/results.png"))
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 600  # 2 metrics x 2 axes

    # The same folder with other overrides is refused (its runs would be mixed with the new ones).
    changed = _sweep_file(tmp_path, overrides={"SOLVER.MAX_ITER": 4})
    with pytest.raises(SweepConfigError, match="4 run folder\\(s\\) .* other overrides"):
        load_sweep(changed)


def test_a_signal_to_a_local_sweep_checkpoints_the_running_run_and_stops(tmp_path, fake_train, monkeypatch):
    sweep = load_sweep(_sweep_file(tmp_path, grid={"SOLVER.BASE_LR": [0.01, 0.02]}))
    monkeypatch.setenv("FAKE_WAIT_SIGTERM", "1")
    first = Path(sweep.runs[0].output_dir) / "started"

    def terminate_when_training():
        deadline = time.monotonic() + 30
        while not first.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if first.exists():  # the sweep's handlers are installed while its run trains
            os.kill(os.getpid(), signal.SIGTERM)  # to the sweep (this process), as a scheduler or `kill` would

    threading.Thread(target=terminate_when_training, daemon=True).start()
    outcomes = run_local(sweep, [sys.executable, str(fake_train)])
    assert [(o["status"], o["returncode"]) for o in outcomes] == [("interrupted", 143), ("not started", None)]
    assert [run_state(r) for r in sweep.runs] == ["resume", "start"]
    monkeypatch.delenv("FAKE_WAIT_SIGTERM")
    outcomes = run_local(sweep, [sys.executable, str(fake_train)])
    assert [o["status"] for o in outcomes] == ["finished", "finished"]
    assert [c["resume"] for c in _calls(sweep.runs[0])] == [False, True]


# ----------------------------------------------------------------------------- submitit


def test_submitit_job_array_then_resubmission_resumes_the_failed_run(tmp_path, fake_train, monkeypatch):
    sweep = load_sweep(_sweep_file(tmp_path, grid={"SOLVER.BASE_LR": [0.01], "SEED": [0, 1]},
                                   slurm={"partition": "gpu", "cpus_per_task": 1, "timeout_min": 5}))
    failing = "BASE_LR=0.01,SEED=1"
    monkeypatch.setenv("FAKE_FAIL", failing)
    command = [sys.executable, str(fake_train)]
    # submitit's LocalExecutor: the pickled TrainJob runs in job processes, as on SLURM.
    outcomes = submit(sweep, command, cluster="local", poll_seconds=0.2)
    assert sorted((o["name"], o["status"]) for o in outcomes) == [("BASE_LR=0.01,SEED=0", "finished"),
                                                                  (failing, "failed")]
    job_folders = [f for f in (tmp_path / "sweep/submitit").iterdir() if f.name.isdigit()]
    assert len(job_folders) == 2 and all(any(f.glob("*_log.out")) for f in job_folders)
    assert [o["returncode"] for o in outcomes if o["status"] == "failed"] == [1]
    # Submitted again, only the failed run is a job, and it continues from its checkpoint
    # (submitit's in-process debug executor: the same TrainJob, without job processes).
    outcomes = submit(sweep, command, cluster="debug")
    assert [(o["name"], o["status"]) for o in outcomes] == [(failing, "finished")]
    assert [c["resume"] for c in _calls(sweep.runs[1])] == [False, True]
    assert len(_calls(sweep.runs[0])) == 1
    assert submit(sweep, command, cluster="debug") == []  # all finished: nothing submitted
    frame = collect(sweep)
    assert list(frame["bbox/AP50"]) == pytest.approx([1.0, 2.0])


def test_train_job_checkpoint_stops_training_and_requeues_the_run(tmp_path, fake_train, monkeypatch):
    sweep = load_sweep(_sweep_file(tmp_path, grid={"SEED": [0]}, overrides={"SOLVER.BASE_LR": 0.01}))
    run = sweep.runs[0]
    monkeypatch.setenv("FAKE_WAIT_SIGTERM", "1")
    job = TrainJob([sys.executable, str(fake_train)], sweep.config)
    errors = []

    def call():
        try:
            job(run)
        except RuntimeError as e:
            errors.append(str(e))

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    while not (Path(run.output_dir) / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pickle.loads(pickle.dumps(job)).base_command == job.base_command  # the process is not pickled
    requeued = job.checkpoint(run)  # what submitit calls before the time limit or on pre-emption
    thread.join(30)
    assert requeued.function is job and requeued.args == (run,)
    assert errors and "interrupted (exit 143)" in errors[0]
    assert run_state(run) == "resume"
    monkeypatch.delenv("FAKE_WAIT_SIGTERM")
    assert requeued.function(*requeued.args)["status"] == "finished"  # the requeued job resumes
    assert [c["resume"] for c in _calls(run)] == [False, True]


# ----------------------------------------------------------------------------- collection


def test_metrics_of_several_test_sets_are_prefixed_and_bad_files_are_absent(tmp_path):
    out = tmp_path / "run"
    for ds, ap in (("a_val", 1.0), ("b_val", 2.0)):
        (out / "inference" / ds).mkdir(parents=True)
        (out / "inference" / ds / "metrics.json").write_text(json.dumps({"results": {"bbox": {"AP50": ap}}}))
    assert read_run_metrics(out, ["a_val", "b_val"]) == {"a_val/bbox/AP50": 1.0, "b_val/bbox/AP50": 2.0}
    (out / "inference" / "b_val" / "metrics.json").write_text('{"results": {"bbox": {"AP5')  # cut short
    assert read_run_metrics(out, ["a_val", "b_val"]) == {"a_val/bbox/AP50": 1.0}
    assert read_run_metrics(out, ["a_val"]) == {"bbox/AP50": 1.0}
    # A classification evaluator's file: flat results, named as EvalHook logs them.
    (out / "inference" / "c_val").mkdir()
    (out / "inference" / "c_val" / "metrics.json").write_text(json.dumps(
        {"results": {"mAUC": 71.5, "AUC/Edema": None}, "task": "multi_label", "threshold_rule": "youden"}))
    got = read_run_metrics(out, ["c_val"])
    assert got["classification/mAUC"] == 71.5 and math.isnan(got["classification/AUC/Edema"]) and len(got) == 2


def test_results_of_a_sweep_without_runs_yet(tmp_path):
    sweep = load_sweep(_sweep_file(tmp_path))
    frame = collect(sweep)
    assert list(frame["status"]) == ["not started"] * 4 and frame["bbox/AP50"].isna().all()
    paths = write_results(sweep, frame)
    assert set(paths) == {"csv", "markdown"}  # nothing to plot
    assert "0 of 4 runs finished" in Path(paths["markdown"]).read_text()


# ----------------------------------------------------------------------------- a real run


def test_one_point_sweep_trains_the_demo_config_through_train_net(tmp_path, tiny_reflacx):
    opts = dict(zip(SMALL_TRAIN_OPTS[0::2], SMALL_TRAIN_OPTS[1::2]))
    opts.update({"CXR.DATASET_ROOT": str(tiny_reflacx), "SOLVER.MAX_ITER": "2", "SOLVER.CHECKPOINT_PERIOD": "1000"})
    path = _sweep_file(tmp_path, overrides=opts, grid={"SEED": [7]}, metrics=["bbox/AP50"])
    tool = load_tool("sweep")
    assert tool.main([str(path)]) == 0
    out = tmp_path / "sweep" / "SEED=7"
    assert (out / "model_final.pth").is_file() and (out / "log.txt").is_file()
    assert get_cxr_cfg(str(out / "config.yaml")).SEED == 7
    evaluated = json.loads((out / "inference/reflacx_val/metrics.json").read_text())["results"]["bbox"]["AP50"]
    results = pd.read_csv(tmp_path / "sweep/results.csv")
    assert list(results["status"]) == ["finished"]
    got = results["bbox/AP50"][0]
    assert (math.isnan(got) and evaluated is None) or got == pytest.approx(evaluated)
    assert tool.main([str(path)]) == 0  # finished: skipped, not trained again
    assert json.loads((out / RUN_RECORD_FILE).read_text())["attempts"] == 1
    (tmp_path / "sweep/results.csv").unlink()
    assert tool.main([str(path), "--collect-only"]) == 0 and (tmp_path / "sweep/results.csv").is_file()
