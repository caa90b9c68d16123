"""Two-process training on CPU (gloo) through tools/train_net.py's ``main`` and
:func:`cxr_det.engine.launch.launch`, end to end on synthetic REFLACX (clinical Faster R-CNN
with validation loss, best checkpoint, plateau LR and early stopping every iteration) and on
synthetic CheXpert (clinical classifier):

- every process uses the same clinical statistics (fitted once; each logs their digest);
- the evaluator gathers both processes' predictions: the run's final metrics equal a
  one-process ``--eval-only`` of its ``model_final.pth``;
- the validation loss covers the whole validation set; plateau and early-stop decisions are
  taken at the same iteration in both processes (a disagreement would hang them: the process
  group's timeout turns that into a failure);
- only process 0 writes files: an audit hook (:func:`sys.addaudithook`) in each process
  records every file it opens for writing, renames or removes in the runs' folders.

Both runs share one launch (one start-up of the two processes).
"""
import hashlib
import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch

import cxr_det  # noqa: F401
from cxr_det.synthetic import make_reflacx
from cxr_det.synthetic.chexpert_writer import make_chexpert
from helpers import SMALL_TRAIN_OPTS, load_tool

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"
CLASSIFIER = ROOT / "configs/demo/classifier_R18_chexpert_synthetic_clinical.yaml"

# Every iteration evaluated; the validation loss improves once (MIN_DELTA is huge), so the
# plateau schedule halves the LR at iterations 1 and 2 and early stopping (patience 2) ends
# training after iteration 2 of 6.
DETECTOR_OPTS = [
    *SMALL_TRAIN_OPTS, "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "1",
    "CXR.TRAIN.VAL_LOSS", "True", "CXR.TRAIN.BEST_METRIC", "val_total_loss", "CXR.TRAIN.BEST_MODE", "min",
    "CXR.TRAIN.MIN_DELTA", "1e9", "CXR.TRAIN.PATIENCE", "2",
    "CXR.TRAIN.PLATEAU.ENABLED", "True", "CXR.TRAIN.PLATEAU.PATIENCE", "1", "CXR.TRAIN.PLATEAU.FACTOR", "0.5",
]
CLASSIFIER_OPTS = [
    "CXR.CLASSIFIER.INPUT_SIZE", "32", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "2",
    "DATALOADER.NUM_WORKERS", "0", "TEST.CXR_CLS_EVAL.PLOTS", "False", "CXR.TRAIN.PLOT_CURVES", "False",
]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def test_backend_choice_and_launcher_arguments():
    from cxr_det.engine.launch import launch, resolve_backend

    assert resolve_backend("auto") == ("nccl" if torch.cuda.is_available() else "gloo")
    assert resolve_backend("gloo") == "gloo"
    with pytest.raises(ValueError, match="one of auto, nccl, gloo"):
        resolve_backend("mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl backend needs CUDA"):
            resolve_backend("nccl")
    assert launch(lambda a, b: a + b, 1, args=(2, 3)) == 5  # one process: main runs here, no process group
    for kwargs, message in [
        ({"num_machines": 2, "machine_rank": 2}, "--machine-rank 2 must be in 0..1"),
        ({"num_machines": 2, "dist_url": "auto"}, "auto picks a port on this machine only"),
        ({"dist_url": ""}, "need --dist-url"),
    ]:
        with pytest.raises(ValueError, match=message):
            launch(print, 2, backend="gloo", **kwargs)
    with pytest.raises(ValueError, match="at least one process"):
        launch(print, 0)


def _writes_under(folders, event, args):
    """The paths under ``folders`` that an audit event writes, renames or removes."""
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        paths = [path] if writes else []
    elif event in ("os.rename", "os.replace", "shutil.move"):
        paths = list(args[:2])
    elif event in ("os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        paths = [args[0]]
    else:
        return []
    out = []
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            p = os.path.abspath(os.fsdecode(p))
            if any(p == f or p.startswith(f + os.sep) for f in folders):
                out.append(p)
    return out


def _train_in_each_process(runs, audit_dir):
    """The launched function: record this process's writes in the runs' folders, train each
    run of ``runs`` ([argv]) with train_net's ``main``, write the record to
    ``audit_dir/rank<r>.json``."""
    from detectron2.utils import comm

    from cxr_det.data import unregister_cxr_datasets
    from cxr_det.engine import argument_parser

    folders = [os.path.abspath(argv[argv.index("OUTPUT_DIR") + 1]) for argv in runs]
    written, recording = [], [True]

    def audit(event, args):
        if recording[0]:
            written.extend(_writes_under(folders, event, args))

    sys.addaudithook(audit)
    train_net = load_tool("train_net")
    for argv in runs:
        unregister_cxr_datasets()  # each run registers the dataset names with its own root
        train_net.main(argument_parser().parse_args(argv))
    recording[0] = False
    Path(audit_dir, f"rank{comm.get_rank()}.json").write_text(json.dumps(sorted(set(written))))


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Both runs trained by 2 gloo processes; returns {"detector": dir, "classifier": dir, ...}."""
    from cxr_det.engine import argument_parser
    from cxr_det.engine.launch import launch

    base = tmp_path_factory.mktemp("multiprocess")
    make_reflacx(base / "reflacx", 30, seed=3, size=160)
    make_chexpert(base / "chexpert", 24, seed=5, size=32)
    runs = {
        "detector": ["--config-file", str(DETECTOR), "CXR.DATASET_ROOT", str(base / "reflacx"),
                     "OUTPUT_DIR", str(base / "detector"), *DETECTOR_OPTS],
        "classifier": ["--config-file", str(CLASSIFIER), "CXR.DATASET_ROOT", str(base / "chexpert"),
                       "OUTPUT_DIR", str(base / "classifier"), *CLASSIFIER_OPTS],
    }
    args = argument_parser().parse_args(["--num-gpus", "2", "--dist-backend", "gloo"])
    (base / "audit").mkdir()
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned processes
    try:
        launch(
            _train_in_each_process, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
            dist_url=args.dist_url, args=(list(runs.values()), str(base / "audit")), backend=args.dist_backend,
            timeout=timedelta(minutes=2),
        )
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    return {"base": base, **{name: base / name for name in runs}}


def _eval_only(argv):
    from cxr_det.engine import argument_parser

    return load_tool("train_net").main(argument_parser().parse_args([str(a) for a in argv]))


def _results(path):
    return json.loads(Path(path).read_text())["results"]


def _run_log(path):
    """The lines a run wrote into its own log: detectron2's logger keeps the file of an earlier
    run of the same process open, so the detector's logs also hold the classifier run's lines,
    which start at the classifier's "Rank of current process" line."""
    return "Rank of current process".join(Path(path).read_text().split("Rank of current process")[:2])


def _digests(log):
    return re.findall(r"clinical statistics sha256 ([0-9a-f]{64}) in process (\d) of 2", _run_log(log))


def test_only_process_0_writes_files(two_process_runs):
    base = two_process_runs["base"]
    rank1 = json.loads((base / "audit/rank1.json").read_text())
    # the audit saw process 1's own log (so it was recording), and nothing else
    assert sorted(Path(p).relative_to(base).as_posix() for p in rank1) == \
        ["classifier/log.txt.rank1", "detector/log.txt.rank1"]
    rank0 = {Path(p).relative_to(base).as_posix() for p in json.loads((base / "audit/rank0.json").read_text())}
    assert {"detector/config.yaml", "detector/run.json", "detector/metrics.json", "detector/clinical_stats.json",
            "detector/model_best.pth", "detector/model_final.pth", "classifier/clinical_stats.json"} <= rank0


@pytest.mark.parametrize("run", ["detector", "classifier"])
def test_every_process_uses_the_statistics_fitted_once(two_process_runs, run):
    out = two_process_runs[run]
    state = json.loads((out / "clinical_stats.json").read_text())
    expected = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    # process 0 logs the statistics it fitted, process 1 those it received
    assert _digests(out / "log.txt") == [(expected, "0")]
    assert _digests(out / "log.txt.rank1") == [(expected, "1")]
    assert torch.load(out / "model_final.pth", weights_only=True)["clinical_featurizer"] == state


def test_detector_training_control_agrees_across_processes(two_process_runs):
    out = two_process_runs["detector"]
    log0, log1 = _run_log(out / "log.txt"), _run_log(out / "log.txt.rank1")
    # evaluated every iteration until the early stop, each time on the whole validation set
    # (not one process's half)
    num_val = json.loads((out / "inference/reflacx_val/metrics.json").read_text())["num_images"]
    val = re.findall(r"Validation losses at iteration (\d+) on (\d+) images: .*val_total_loss=([-.\d]+)", log0)
    assert [(int(i), int(n)) for i, n, _ in val] == [(0, num_val), (1, num_val), (2, num_val)]
    losses = {int(i): float(v) for i, _, v in val}
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert max(line["iteration"] for line in lines if "total_loss" in line) == 2

    best = json.loads((out / "model_best.json").read_text())
    assert best["value"] == pytest.approx(min(losses.values()), abs=1e-4)
    assert best["value"] == pytest.approx(losses[best["iteration"]], abs=1e-4)

    def decisions(log):
        return re.findall(r"(Plateau: .*|Early stopping: .*)", log)

    assert len(decisions(log0)) == 3  # LR halved at iterations 1 and 2, then the stop after 2
    assert decisions(log0) == decisions(log1)
    assert "training stops after iteration 2 of 6" in decisions(log0)[-1]
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 2


def _flat(results, prefix=""):
    out = {}
    for key, value in results.items():
        out.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value})
    return out


def _same_evaluation(gathered, alone):
    """The metrics.json of the 2-process run's final evaluation and of a 1-process one agree."""
    first, second = json.loads(Path(gathered).read_text()), json.loads(Path(alone).read_text())
    assert _flat(second["results"]) == pytest.approx(_flat(first["results"]), nan_ok=True)
    for key in ("num_images", "num_predictions"):
        assert second.get(key) == first.get(key), key


def test_detector_metrics_equal_one_process_evaluation(two_process_runs, tmp_path, one_torch_thread):
    out = two_process_runs["detector"]
    _eval_only(["--eval-only", "--run", out / "model_final.pth",
                "CXR.DATASET_ROOT", two_process_runs["base"] / "reflacx",
                "OUTPUT_DIR", tmp_path, "TEST.CXR_EVAL.PLOTS", "False"])
    folder = "inference/reflacx_val"
    gathered = json.loads((out / folder / "coco_instances_results.json").read_text())
    alone = json.loads((tmp_path / folder / "coco_instances_results.json").read_text())
    assert len(gathered) == len(alone) > 0
    assert {p["image_id"] for p in gathered} == {p["image_id"] for p in alone}
    _same_evaluation(out / folder / "metrics.json", tmp_path / folder / "metrics.json")


def test_classifier_metrics_equal_one_process_evaluation(two_process_runs, tmp_path, one_torch_thread):
    out = two_process_runs["classifier"]
    _eval_only(["--eval-only", "--run", out / "model_final.pth",
                "CXR.DATASET_ROOT", two_process_runs["base"] / "chexpert",
                "OUTPUT_DIR", tmp_path, "TEST.CXR_CLS_EVAL.PLOTS", "False"])
    for split in ("chexpert_val", "chexpert_valid"):
        folder = Path("inference", split)
        _same_evaluation(out / folder / "metrics.json", tmp_path / folder / "metrics.json")
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    # the periodic evaluation after iteration 1 and the final one (logged at MAX_ITER)
    assert [line["iteration"] for line in lines if "chexpert_val/classification/mAUC" in line] == [1, 4]
