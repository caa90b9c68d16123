"""Each detectron2 v0.6 compatibility fix works, and is a no-op once it is not needed."""
import logging
import sys

import numpy as np
import pytest
import torch

import cxr_det
from cxr_det import compat
from helpers import model_cfg


def test_every_fix_is_a_no_op_the_second_time():
    # pytest runs each test with the warning filters of before collection, so the warning
    # filters applied at import are re-applied first; every other fix is process-wide.
    compat._quiet_detectron2_warnings()
    for fix in compat._FIXES:
        assert fix() is False, fix.__name__
    before = list(compat.APPLIED)
    assert compat.apply() == before


def test_pillow_linear_and_transforms_import():
    from PIL import Image

    import detectron2.data.transforms as T

    assert Image.LINEAR == Image.BILINEAR
    aug = T.ResizeShortestEdge(32, 64)
    out = aug.get_transform(np.zeros((20, 40, 3), np.uint8)).apply_image(np.zeros((20, 40, 3), np.uint8))
    assert out.shape[:2] == (32, 64)


@pytest.mark.skipif(compat.has_compiled_extension(), reason="detectron2 has its C++ extension")
def test_ops_without_extension_raise_a_clear_error():
    from detectron2.layers import ROIAlignRotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    with pytest.raises(compat.MissingExtensionError, match="C\\+\\+ extension"):
        pairwise_iou_rotated(torch.tensor([[5.0, 5, 4, 4, 0]]), torch.tensor([[5.0, 5, 4, 4, 0]]))
    pooler = ROIAlignRotated((2, 2), spatial_scale=1.0, sampling_ratio=0)
    with pytest.raises(compat.MissingExtensionError, match="roi_align_rotated_forward"):
        pooler(torch.zeros(1, 2, 8, 8), torch.tensor([[0.0, 4, 4, 2, 2, 0]]))
    # The stand-in was only visible during import: the environment report still sees no _C.
    assert "detectron2._C" not in sys.modules
    with pytest.raises(ImportError):
        import detectron2._C  # noqa: F401
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2._C" in collect_env_info()


def _tiny_coco():
    from pycocotools.coco import COCO

    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 0, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
        ],
        "categories": [{"id": 0, "name": "lesion"}],
    }
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    results = [
        {"image_id": 1, "category_id": 0, "bbox": [11, 10, 30, 30], "score": 0.9},
        {"image_id": 2, "category_id": 0, "bbox": [0, 0, 20, 20], "score": 0.8},
    ]
    return coco, results


def test_coco_evaluation_works_without_extension():
    from detectron2.evaluation.coco_evaluation import _evaluate_predictions_on_coco

    coco, results = _tiny_coco()
    fast = _evaluate_predictions_on_coco(coco, results, "bbox", use_fast_impl=True)
    official = _evaluate_predictions_on_coco(coco, results, "bbox", use_fast_impl=False)
    # One of the two lesions found first (IoU 0.94), the other missed: precision 1 at the
    # 51 of COCO's 101 recall points up to 0.5.
    assert fast.stats[1] == pytest.approx(51 / 101, abs=1e-6)
    assert np.allclose(fast.stats, official.stats)


def test_model_zoo_config_files_resolve():
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml")
    assert path.endswith("faster_rcnn_R_50_FPN_3x.yaml")
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is None:
        assert "pkg_resources" not in sys.modules


def test_class_histogram_is_logged(caplog):
    from detectron2.data import build

    dicts = [
        {"file_name": "a", "annotations": [{"category_id": 0}, {"category_id": 1}, {"category_id": 1}]},
        {"file_name": "b", "annotations": [{"category_id": 1, "iscrowd": 1}]},
    ]
    logger = logging.getLogger("detectron2.data.build")
    logger.propagate, old = True, logger.propagate
    try:
        with caplog.at_level(logging.INFO, logger="detectron2.data.build"):
            build.print_instances_class_histogram(dicts, ["cardiomegaly", "nodule"])
    finally:
        logger.propagate = old
    text = caplog.text
    assert "cardiomegaly" in text and "nodule" in text
    from cxr_det.compat import count_instances

    assert count_instances(dicts, 2) == [1, 2]
    with pytest.raises(ValueError, match="category_id 5"):
        count_instances([{"file_name": "c", "annotations": [{"category_id": 5}]}], 2)


def test_legacy_mask_paste_returns_a_mask():
    from detectron2.layers.mask_ops import paste_mask_in_image_old

    pasted = paste_mask_in_image_old(torch.ones(7, 7), torch.tensor([10.0, 20.0, 30.0, 40.0]), 64, 64, 0.5)
    assert pasted.shape == (64, 64)
    assert pasted[30, 20] == 1 and pasted[5, 5] == 0


def test_torch2_scheduler_state_is_checkpointed():
    from detectron2.engine import hooks

    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        opt.step()
        sched.step()
    state = hooks.LRScheduler(opt, sched).state_dict()
    assert state["last_epoch"] == 3

    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    hooks.LRScheduler(opt2, sched2).load_state_dict(state)
    assert sched2.last_epoch == 3


def test_checkpoint_with_numpy_loads(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "ckpt.pth"
    stats = {"mean": np.array([36.8, 80.0]), "count": np.int64(12)}
    torch.save({"model": model.state_dict(), "clinical_stats": stats}, path)
    extra = DetectionCheckpointer(torch.nn.Linear(2, 2)).load(str(path))
    assert np.allclose(extra["clinical_stats"]["mean"], [36.8, 80.0])
    assert int(extra["clinical_stats"]["count"]) == 12


def test_amp_is_turned_off_on_cpu():
    cfg = model_cfg(opts=["SOLVER.AMP.ENABLED", "True", "MODEL.DEVICE", "cpu"])
    assert cfg.SOLVER.AMP.ENABLED is False
    assert cxr_det.__version__


def test_export_without_caffe2_still_counts_flops():
    import importlib.util

    if importlib.util.find_spec("caffe2") is not None:
        pytest.skip("caffe2 is installed")
    import detectron2.export as export
    from detectron2.utils.analysis import FlopCountAnalysis

    assert export.TracingAdapter is not None
    with pytest.raises(compat.MissingExtensionError, match="Caffe2"):
        export.Caffe2Tracer
    model = torch.nn.Conv2d(1, 2, 3)
    flops = FlopCountAnalysis(model, (torch.zeros(1, 1, 8, 8),))
    assert flops.total() == 2 * 1 * 9 * 6 * 6


def test_detectron2_start_up_warnings_are_silenced_but_not_others():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('default'); import cxr_det, cxr_det.modeling; "
            "from detectron2.modeling.anchor_generator import DefaultAnchorGenerator; import torch; "
            "torch.meshgrid(torch.arange(2), torch.arange(2)); "
            "warnings.warn('a user warning of the caller', UserWarning)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "torch.jit.script" not in run.stderr and "torch.meshgrid" not in run.stderr
    assert "a user warning of the caller" in run.stderr
