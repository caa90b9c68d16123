"""Runs that survive ``kill -9`` (issue 14): real ``tools/train_net.py`` processes, SIGKILLed
with their data-loader workers (a process group), then resumed with ``--resume``.

The processes run through a wrapper written here (not part of the package) that pauses
``train_net.py`` at a chosen point: after the writers of an iteration (the evaluation, its
metrics line and the best model written, the periodic checkpoint not yet), or half-way
through writing a checkpoint; the test kills the process group there. Without the pauses a
kill lands at a random moment and the tests would check a different thing each run.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import cxr_det  # noqa: F401
from cxr_det.engine.checkpoint import CXRCheckpointer, UnreadableCheckpointError
from cxr_det.engine.run_folder import truncate_metrics
from cxr_det.synthetic import make_reflacx
from helpers import SMALL_TRAIN_OPTS

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"
TRAIN_NET = ROOT / "tools/train_net.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc (Linux)")

# tools/train_net.py with pauses; the test SIGKILLs the process group at the PAUSED line.
WRAPPER = '''
import io
import os
import runpy
import sys
import time

import cxr_det  # noqa: F401  (detectron2 compatibility first, as train_net.py)
import torch
from detectron2.engine import hooks

TRAIN_NET = os.environ["CXR_TEST_TRAIN_NET"]
PAUSE_IN_SAVE = os.environ.get("CXR_TEST_PAUSE_IN_SAVE", "")  # a checkpoint name, e.g. model_0000019
PAUSE_AFTER_WRITE = int(os.environ.get("CXR_TEST_PAUSE_AFTER_WRITE", "-1"))  # an iteration
_save = torch.save


def pause(message):
    print("PAUSED " + message, flush=True)
    time.sleep(600)


def save(obj, f, *args, **kwargs):
    target = os.readlink(f"/proc/self/fd/{f.fileno()}") if hasattr(f, "fileno") else str(f)
    if PAUSE_IN_SAVE and os.path.basename(target).startswith("." + PAUSE_IN_SAVE + ".pth."):
        buffer = io.BytesIO()
        _save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        pause(f"in save {target}")
    return _save(obj, f, *args, **kwargs)


def after_step(self, _after_step=hooks.PeriodicWriter.after_step):
    _after_step(self)
    if self.trainer.iter == PAUSE_AFTER_WRITE:
        for writer in self._writers:  # as if the events had reached the disk before the kill
            if hasattr(writer, "flush"):
                writer.flush()
        pause(f"after write {self.trainer.iter}")


torch.save = save
hooks.PeriodicWriter.after_step = after_step
sys.argv = [TRAIN_NET] + sys.argv[1:]
runpy.run_path(TRAIN_NET, run_name="__main__")
'''


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr")
    make_reflacx(root, 30, seed=3, size=160)
    return root


def _argv(root, out, max_iter, extra=()):
    return [str(a) for a in ["--config-file", DEMO_CONFIG, "CXR.DATASET_ROOT", root, "OUTPUT_DIR", out,
                             "SOLVER.MAX_ITER", max_iter, "SOLVER.CHECKPOINT_PERIOD", 5, *SMALL_TRAIN_OPTS, *extra]]


def _env(**extra):
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", CXR_TEST_TRAIN_NET=str(TRAIN_NET), **extra)


def _run_until_paused_then_kill(tmp_path, argv, timeout=240, **pause):
    """Start the wrapper in its own process group, wait for its PAUSED line, SIGKILL the group."""
    wrapper = tmp_path / "train_net_with_pauses.py"
    wrapper.write_text(WRAPPER)
    proc = subprocess.Popen([sys.executable, str(wrapper), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(**pause), start_new_session=True)
    lines, deadline = [], time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PAUSED") or time.time() > deadline:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its data-loader workers
        proc.wait(timeout=60)
        proc.stdout.close()
    log = "".join(lines)
    assert lines and lines[-1].startswith("PAUSED"), log[-3000:]
    assert proc.returncode == -signal.SIGKILL
    return log


def _resume(argv):
    run = subprocess.run([sys.executable, str(TRAIN_NET), "--resume", *argv], capture_output=True, text=True,
                         env=_env(), timeout=300)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Traceback" not in log
    return log


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


def _scalars(out, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_kill_9_after_an_evaluation_resumes_at_the_last_checkpoint_without_duplicates_or_gaps(
        synthetic_root, tmp_path):
    out = tmp_path / "run"
    # lr decreases every iteration after warm-up (cosine), so as the "best metric" (mode min)
    # every evaluation (9, 19) writes a best model: the one at 19 is past the checkpoint at 14.
    argv = _argv(synthetic_root, out, 25, ["TEST.EVAL_PERIOD", 10, "DATALOADER.NUM_WORKERS", 1,
                                           "CXR.TRAIN.BEST_METRIC", "lr", "CXR.TRAIN.BEST_MODE", "min"])
    _run_until_paused_then_kill(tmp_path, argv, CXR_TEST_PAUSE_AFTER_WRITE="19")

    # Killed after iteration 19's evaluation, best model and metrics line, before its checkpoint.
    assert (out / "last_checkpoint").read_text() == "model_0000014.pth"
    assert [m["iteration"] for m in _metrics(out)] == [19]
    assert json.loads((out / "model_best.json").read_text())["iteration"] == 19
    assert [step for step, _ in _scalars(out, "total_loss")] == [19]
    for checkpoint in out.glob("model_*.pth"):
        torch.load(checkpoint, map_location="cpu", weights_only=True)  # every one complete

    log = _resume(argv)
    assert "Resuming from " + str(out / "model_0000014.pth") + ": continuing at iteration 15 of 25" in log

    # metrics.json: each iteration once, in order, none of the write schedule missing (every
    # 20 iterations and the last one): the killed run's line 19 replaced by the resumed run's.
    lines = _metrics(out)
    its = [m["iteration"] for m in lines]
    assert its == sorted(set(its)) and {19, 24} <= set(its), its
    losses = {m["iteration"]: m["total_loss"] for m in lines if "total_loss" in m}
    # TensorBoard (read as TensorBoard reads it): the killed run's events past 14 discarded.
    steps = _scalars(out, "total_loss")
    assert [step for step, _ in steps] == [19, 24]
    assert all(value == pytest.approx(losses[step], rel=1e-6) for step, value in steps)
    # The best model of the lost stretch moved aside; the resumed run wrote its own.
    aside = list((out / "previous_runs").glob("*-past-14"))
    assert len(aside) == 1 and json.loads((aside[0] / "model_best.json").read_text())["iteration"] == 19
    best = json.loads((out / "model_best.json").read_text())
    assert best["iteration"] >= 19 and (out / "model_best.pth").is_file()
    # The final model loads, and the resumed run evaluated it.
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 24 and (out / "last_checkpoint").read_text() == "model_final.pth"
    evaluation = json.loads((out / "inference/reflacx_val/metrics.json").read_text())
    assert "bbox" in evaluation["results"]


def test_kill_9_during_a_checkpoint_save_leaves_a_loadable_last_checkpoint(synthetic_root, tmp_path):
    out = tmp_path / "run"
    argv = _argv(synthetic_root, out, 10, ["TEST.EVAL_PERIOD", 0])
    _run_until_paused_then_kill(tmp_path, argv, CXR_TEST_PAUSE_IN_SAVE="model_0000009")

    # Half of model_0000009.pth was written, under a temporary name; the tag still names 4.
    partial = list(out.glob(".model_0000009.pth.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    with pytest.raises(Exception):
        torch.load(partial[0], map_location="cpu", weights_only=True)  # what a plain write would have left
    assert not (out / "model_0000009.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_0000004.pth"
    torch.load(out / "model_0000004.pth", map_location="cpu", weights_only=True)

    log = _resume(argv)
    assert "continuing at iteration 5 of 10" in log
    assert not list(out.glob(".*.tmp"))  # the killed write's temporary file removed
    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["iteration"] == 9


# ------------------------------------------------------------------ checkpointer, in process


def _checkpointer(folder, seed=0):
    torch.manual_seed(seed)
    return CXRCheckpointer(nn.Linear(3, 2), str(folder))


def test_a_failed_save_leaves_the_last_checkpoint_and_no_file(tmp_path, monkeypatch):
    saver = _checkpointer(tmp_path)
    saver.save("model_0000004", iteration=4)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands for the process dying

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        saver.save("model_0000009", iteration=9)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def test_save_flushes_before_writing_and_can_leave_the_tag(tmp_path):
    saver = _checkpointer(tmp_path)
    calls = []
    saver.before_save.append(lambda: calls.append(sorted(os.listdir(tmp_path))))
    saver.save("model_0000004")
    saver.save("model_best", tag_last=False)
    assert calls == [[], ["last_checkpoint", "model_0000004.pth"]]  # called before anything is written
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_falls_back_past_an_unreadable_last_checkpoint_and_says_so(tmp_path, caplog):
    # What an older version killed mid-save could leave: the tag names a truncated file.
    saver = _checkpointer(tmp_path, seed=0)
    saver.save("model_0000004", iteration=4)
    expected = {k: v.clone() for k, v in saver.model.state_dict().items()}
    saver = _checkpointer(tmp_path, seed=1)
    saver.save("model_0000009", iteration=9)
    saver.save("model_0000014", iteration=14)
    _truncate(tmp_path / "model_0000014.pth")
    (tmp_path / "model_0000009.pth").write_bytes(b"")
    resumer = _checkpointer(tmp_path, seed=2)
    with caplog.at_level("WARNING"):
        extra = resumer.resume_or_load("", resume=True)
    assert resumer.resumed_from == str(tmp_path / "model_0000004.pth") and extra["iteration"] == 4
    assert all(torch.equal(v, expected[k]) for k, v in resumer.model.state_dict().items())
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "model_0000014.pth: not readable" in warning and "model_0000009.pth: not readable" in warning
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def test_resume_with_an_emptied_tag_takes_the_newest_readable_checkpoint(tmp_path):
    # An older version killed while rewriting last_checkpoint left it empty.
    saver = _checkpointer(tmp_path)
    saver.save("model_0000004", iteration=4)
    saver.save("model_0000009", iteration=9)
    (tmp_path / "last_checkpoint").write_text("")
    resumer = _checkpointer(tmp_path, seed=3)
    assert resumer.resume_or_load("", resume=True)["iteration"] == 9


def test_resume_without_any_readable_checkpoint_names_them(tmp_path):
    saver = _checkpointer(tmp_path)
    saver.save("model_0000004", iteration=4)
    saver.save("model_0000009", iteration=9)
    _truncate(tmp_path / "model_0000004.pth")
    (tmp_path / "model_0000009.pth").unlink()
    with pytest.raises(UnreadableCheckpointError, match="model_0000009.pth: no such file.*model_0000004.pth: not "
                                                        "readable.*without --resume") as error:
        _checkpointer(tmp_path).resume_or_load("", resume=True)
    assert [os.path.basename(p) for p in error.value.paths] == ["model_0000009.pth", "model_0000004.pth"]


def test_truncate_metrics_drops_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"iteration": 19, "loss": 1.0}) + "\n" + '{"iteration": 39, "lo')
    assert truncate_metrics(str(path), 40) == 1
    assert path.read_text() == json.dumps({"iteration": 19, "loss": 1.0}) + "\n"
