"""Training control on a tiny model with scripted evaluation metrics: best checkpoint, early
stopping, plateau learning rate, validation loss, and the training curves."""
import copy
import json
import math
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import cxr_det  # noqa: F401

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import SimpleTrainer, hooks
from detectron2.solver import LRMultiplier
from detectron2.utils.events import EventStorage, JSONWriter, get_event_storage
from fvcore.common.param_scheduler import ConstantParamScheduler

from cxr_det.config import add_cxr_config
from cxr_det.engine.hooks import TrainingCurves, add_training_control_hooks
from cxr_det.engine.metric_hooks import BestMetricCheckpointer, EarlyStop, EarlyStopping, PlateauLRScheduler
from cxr_det.engine.validation_loss import ValidationLoss
from cxr_det.utils.training_curves import metric_series, plot_training_curves
from helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]


class TinyDetector(nn.Module):
    """Losses in training mode, predictions in eval mode, like detectron2's meta-architectures."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 1)
        self.frozen = nn.Dropout(0.5)

    def forward(self, batch):
        x = torch.stack([d["x"] for d in batch])
        y = torch.stack([d["y"] for d in batch])
        pred = self.head(self.norm(x)).squeeze(1)
        if not self.training:
            return pred
        get_event_storage().put_scalar("tiny/batch_size", len(batch))
        sampled = torch.randperm(len(batch))[: max(1, len(batch) // 2)]  # as ROI heads sample proposals
        return {
            "loss_mse": ((pred - y) ** 2).mean(),
            "loss_l1": (pred - y).abs().mean(),
            "loss_sampled": (pred - y)[sampled].abs().mean(),
        }


def _batches(n, seed, batch_size=4):
    g = torch.Generator().manual_seed(seed)
    return [
        [{"x": torch.randn(3, generator=g) * 2 + 1, "y": torch.randn((), generator=g)} for _ in range(batch_size)]
        for _ in range(n)
    ]


def _forever(batches):
    while True:
        yield from batches


class _Trainer(SimpleTrainer):
    """SimpleTrainer with DefaultTrainer's scheduler and checkpointer, counting its steps and
    catching EarlyStop as cxr_det's Trainer.train does."""

    def __init__(self, output_dir, lr=0.1):
        torch.manual_seed(0)
        model = TinyDetector()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        super().__init__(model, _forever(_batches(4, seed=0)), optimizer)
        self.scheduler = LRMultiplier(optimizer, ConstantParamScheduler(1.0), max_iter=1000)
        self.checkpointer = DetectionCheckpointer(model, str(output_dir), trainer=weakref.proxy(self))
        self.steps = 0
        self.stopped = None

    def run_step(self):
        self.steps += 1
        super().run_step()

    def train(self, start_iter, max_iter):
        try:
            super().train(start_iter, max_iter)
        except EarlyStop as stop:
            self.stopped = stop


def _scripted_eval(values):
    """EvalHook's function: returns the next scripted bbox/AP50 at each evaluation."""
    calls = []

    def evaluate():
        calls.append(len(calls))
        return {"bbox": {"AP50": values[len(calls) - 1], "AP": 1.0}}

    return evaluate, calls


def test_best_checkpoint_and_early_stop_on_scripted_metric(tmp_path):
    # Evaluations after iterations 1, 3, 5, 7, 9: best 30 at iteration 3, then 3 without
    # improvement (30 only equals it) -> stop after iteration 9; 29 is the final evaluation.
    values = [10.0, 30.0, 20.0, 25.0, 30.0, 29.0]
    trainer = _Trainer(tmp_path)
    evaluate, calls = _scripted_eval(values)
    metrics_file = str(tmp_path / "metrics.json")
    seen = {"weights": {}, "tag": {}}

    def after_step(t):
        seen["weights"][t.iter] = {k: v.clone() for k, v in t.model.state_dict().items()}
        tag = tmp_path / "last_checkpoint"
        seen["tag"][t.iter] = tag.read_text() if tag.exists() else None

    def after_train(t):
        seen["end"] = (t.iter, t.max_iter, t.storage.latest()["bbox/AP50"])

    trainer.register_hooks([
        hooks.LRScheduler(),
        hooks.PeriodicCheckpointer(trainer.checkpointer, period=4),
        hooks.EvalHook(2, evaluate),
        BestMetricCheckpointer(2, trainer.checkpointer, "bbox/AP50"),
        EarlyStopping(2, "bbox/AP50", patience=3, checkpointer=trainer.checkpointer),
        hooks.CallbackHook(after_step=after_step),
        hooks.PeriodicWriter([JSONWriter(metrics_file)], period=20),
        TrainingCurves(metrics_file, str(tmp_path)),
        hooks.CallbackHook(after_train=after_train),
    ])
    trainer.train(0, 40)

    assert isinstance(trainer.stopped, EarlyStop) and trainer.stopped.iteration == 9
    assert trainer.steps == 10
    assert seen["end"] == (10, 10, (29.0, 10))  # after_train ran as for a run with MAX_ITER 10
    assert len(calls) == 6  # 5 periodic evaluations + the final one

    best = torch.load(tmp_path / "model_best.pth")
    assert best["iteration"] == 3
    assert best["best_metric"]["value"] == 30.0 and best["best_metric"]["iteration"] == 3
    for k, v in best["model"].items():
        assert torch.equal(v, seen["weights"][3][k]), k
    assert json.loads((tmp_path / "model_best.json").read_text())["iteration"] == 3
    assert trainer.state_dict()["hooks"]["BestMetricCheckpointer"] == {"best_metric": 30.0, "best_iter": 3}

    final = torch.load(tmp_path / "model_final.pth")
    assert final["iteration"] == 9
    assert final["trainer"]["hooks"]["EarlyStopping"] == {"best": 30.0, "best_iter": 3, "num_bad": 3}
    for k, v in final["model"].items():
        assert torch.equal(v, seen["weights"][9][k]), k
    # Saving model_best never re-points last_checkpoint at it.
    assert seen["tag"][1] is None
    assert seen["tag"][3] == seen["tag"][5] == "model_0000003.pth"
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"

    records = [json.loads(line) for line in open(metrics_file)]
    assert [(r["iteration"], r["bbox/AP50"]) for r in records if "bbox/AP50" in r][-1] == (10, 29.0)
    assert (tmp_path / "training_metrics.png").is_file() and (tmp_path / "training_losses.png").is_file()


def test_plateau_reduces_the_learning_rate_at_the_expected_evaluations(tmp_path):
    # Evaluations after iterations 1, 3, ..., 15. Patience 2: 60 at iteration 3, then 60, 60
    # -> halved after iteration 7; 70 at 9, then 70, 70 -> halved after 13; 65 at 15 is one more.
    values = [50.0, 60.0, 60.0, 60.0, 70.0, 70.0, 70.0, 65.0, 0.0]
    trainer = _Trainer(tmp_path, lr=0.1)
    evaluate, _ = _scripted_eval(values)
    plateau = PlateauLRScheduler(2, "bbox/AP50", factor=0.5, patience=2)
    trainer.register_hooks([hooks.LRScheduler(), hooks.EvalHook(2, evaluate), plateau])
    trainer.train(0, 18)

    lrs = {it: lr for lr, it in trainer.storage.history("lr").values()}
    expected = {it: 0.1 if it <= 7 else 0.05 if it <= 13 else 0.025 for it in range(18)}
    assert lrs == pytest.approx(expected)
    assert trainer.scheduler.base_lrs == pytest.approx([0.025])

    state = trainer.state_dict()
    assert state["hooks"]["LRScheduler"]["base_lrs"] == pytest.approx([0.025])
    resumed = _Trainer(tmp_path / "resumed")
    resumed_plateau = PlateauLRScheduler(2, "bbox/AP50", factor=0.5, patience=2)
    resumed.register_hooks([hooks.LRScheduler(), resumed_plateau])
    resumed.load_state_dict(state)  # before before_train, as resume_or_load does
    resumed.max_iter = 18
    resumed.before_train()
    assert resumed_plateau._plateau.best == 70.0 and resumed_plateau._plateau.num_bad_epochs == 1
    assert resumed.scheduler.base_lrs == pytest.approx([0.025])


def _expected_val_losses(model, batches):
    sums, n = {}, 0
    with torch.no_grad(), EventStorage():
        for batch in batches:
            for k, v in model(batch).items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(batch)
            n += len(batch)
    means = {f"val_{k}": v / n for k, v in sums.items()}
    means["val_total_loss"] = sum(means.values())
    return means


def _clone(state):
    return {k: v.clone() for k, v in state.items()}


def test_validation_loss_equals_the_losses_on_the_val_batches_with_bn_untouched(tmp_path):
    val = _batches(3, seed=1, batch_size=5)
    trainer = _Trainer(tmp_path)
    model = trainer.model
    model.frozen.eval()  # a submodule deliberately kept in eval mode
    bn_state = {}
    hook = ValidationLoss(2, lambda: val)
    trainer.register_hooks([
        hooks.CallbackHook(after_step=lambda t: bn_state.__setitem__("before", _clone(model.norm.state_dict()))),
        hook,
        hooks.CallbackHook(after_step=lambda t: bn_state.__setitem__("after", _clone(model.norm.state_dict()))),
    ])
    trainer.train(0, 2)

    for k, v in bn_state["before"].items():
        assert torch.equal(v, bn_state["after"][k]), k
    assert model.training and model.norm.training and not model.frozen.training
    assert len(trainer.storage.history("tiny/batch_size").values()) == 2  # the val pass logged nothing there

    model.norm.eval()
    expected = _expected_val_losses(model, val)
    model.norm.train()
    logged = {k: trainer.storage.history(k).latest() for k in expected}
    assert set(logged) == {"val_loss_mse", "val_loss_l1", "val_loss_sampled", "val_total_loss"}
    assert all(trainer.storage.history(k).values()[-1][1] == 1 for k in expected)
    deterministic = ("val_loss_mse", "val_loss_l1")
    assert {k: logged[k] for k in deterministic} == pytest.approx({k: expected[k] for k in deterministic})
    assert logged["val_total_loss"] == pytest.approx(sum(v for k, v in logged.items() if k != "val_total_loss"))
    # BatchNorm with batch statistics would have given other losses: the check above can fail.
    with_batch_stats = _expected_val_losses(copy.deepcopy(model), val)["val_loss_mse"]
    assert not math.isclose(with_batch_stats, expected["val_loss_mse"])

    rng = torch.get_rng_state()
    assert hook.compute() == pytest.approx(logged)  # the same sampling each time
    assert torch.equal(torch.get_rng_state(), rng)  # and the training's random stream is untouched


METRICS_LINES = [
    {"iteration": 19, "total_loss": 2.0, "loss_cls": 1.2, "loss_box_reg": 0.8, "lr": 0.01,
     "fast_rcnn/cls_accuracy": 0.9, "data_time": 0.1},
    {"iteration": 39, "total_loss": 1.5, "loss_cls": 0.9, "loss_box_reg": 0.6, "lr": 0.01},
    {"iteration": 49, "val_total_loss": 1.7, "val_loss_cls": 1.0, "val_loss_box_reg": 0.7, "bbox/AP": 10.0,
     "bbox/AP50": 20.0, "bbox/AP-Nodule": 5.0, "froc/CPM": 30.0, "froc/CPM-Nodule": 20.0},
    {"iteration": 59, "total_loss": float("nan"), "loss_cls": 0.8, "lr": 0.001},
    {"iteration": 99, "val_total_loss": 1.4, "bbox/AP": 15.0, "bbox/AP50": float("nan"), "froc/CPM": 35.0},
    {"iteration": 39, "total_loss": 1.4},  # a resumed run repeats iteration 39
]


def _write_metrics(path):
    with open(path, "w") as f:
        for record in METRICS_LINES:
            f.write(json.dumps(record) + "\n")
        f.write('{"iteration": 119, "total_lo')  # killed mid-write
    return str(path)


def test_training_curves_from_handwritten_metrics(tmp_path):
    from PIL import Image

    from cxr_det.utils.training_curves import load_metrics

    path = _write_metrics(tmp_path / "metrics.json")
    series = metric_series(load_metrics(path))
    assert series["total_loss"] == ([19, 39], [2.0, 1.4])
    assert series["bbox/AP50"] == ([49], [20.0])
    assert series["froc/CPM"] == ([49, 99], [30.0, 35.0])

    written = plot_training_curves(path, str(tmp_path / "curves"))
    sizes = {k: Image.open(p).size for k, p in written.items()}
    # bbox and froc panels only: fast_rcnn/cls_accuracy and per-class APs are not drawn.
    assert sizes == {"losses": (900, 500), "metrics": (900, 700), "lr": (900, 300)}

    with pytest.raises(FileNotFoundError, match="nothing.json"):
        plot_training_curves(str(tmp_path / "nothing.json"), str(tmp_path))


def test_plot_tool(tmp_path):
    tool = load_tool("plot_training_curves")
    path = _write_metrics(tmp_path / "metrics.json")
    assert tool.main(["--metrics", path, "--output", str(tmp_path / "out"), "--metric", "froc/*"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "training_losses.png", "training_lr.png", "training_metrics.png"
    ]
    assert tool.main(["--metrics", str(tmp_path / "missing.json"), "--output", str(tmp_path)]) == 2


def test_config_places_the_hooks_after_eval_in_order(tmp_path):
    cfg = add_cxr_config(get_cfg())
    cfg.merge_from_list([
        "DATASETS.TEST", "('val',)", "TEST.EVAL_PERIOD", "10", "OUTPUT_DIR", str(tmp_path),
        "CXR.TRAIN.PATIENCE", "3", "CXR.TRAIN.PLATEAU.ENABLED", "True", "CXR.TRAIN.BEST_METRIC", "froc/CPM",
    ])
    base = [hooks.IterationTimer(), hooks.LRScheduler(), hooks.EvalHook(10, dict), hooks.PeriodicWriter([])]
    ordered = add_training_control_hooks(base, cfg, checkpointer=None, val_data_loader=list)
    assert [type(h).__name__ for h in ordered] == [
        "IterationTimer", "LRScheduler", "EvalHook", "ValidationLoss", "BestMetricCheckpointer",
        "PlateauLRScheduler", "EarlyStopping", "PeriodicWriter", "TrainingCurves",
    ]
    cfg.merge_from_list(["CXR.TRAIN.BEST_METRIC", "", "CXR.TRAIN.VAL_LOSS", "False", "CXR.TRAIN.PLOT_CURVES", "False"])
    assert [type(h) for h in add_training_control_hooks(base, cfg, None)] == [type(h) for h in base]
