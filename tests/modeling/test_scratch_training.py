"""Every shipped config trains from scratch (``MODEL.WEIGHTS ""``, the README's offline advice)
without diverging, along train_net's path: set-up, Trainer, a few iterations at full LR on
the synthetic datasets. Frozen-BN ResNets from random weights reached Inf/NaN by iteration 3;
:func:`cxr_det.modeling.scratch.adapt_for_scratch` switches them to GroupNorm."""
import logging
import math
import shutil
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401
from detectron2.config import get_cfg
from detectron2.engine.train_loop import HookBase

from cxr_det.config import add_cxr_config, get_cxr_cfg
from cxr_det.engine import adapt_to_device
from cxr_det.synthetic import make_reflacx, make_vindr
from cxr_det.synthetic.chexpert_writer import make_chexpert
from cxr_det.synthetic.image_label_writers import make_image_folder, make_vindr_image_labels
from cxr_det.synthetic.mimic_labels_writer import make_mimic_cxr_labels
from cxr_det.engine import Trainer, argument_parser, setup
from cxr_det.modeling.scratch import RESNET_BACKBONES, adapt_for_scratch, scratch_changes
from helpers import model_cfg

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if not p.name.startswith("Base-"))
IDS = [str(p.relative_to(CONFIG_DIR)) for p in CONFIGS]
R50_CONFIGS = [p for p in CONFIGS if "R_50" in p.name]
# Configs whose backbone is not one of detectron2's ResNets: nothing to switch from scratch.
NOT_RESNET = [p for p in CONFIGS if get_cxr_cfg(str(p)).MODEL.BACKBONE.NAME not in RESNET_BACKBONES]
OFFLINE = ["MODEL.WEIGHTS", "", "CXR.MOBILENET.PRETRAINED", "False", "CXR.CLASSIFIER.TORCHVISION.WEIGHTS", ""]
# A detector from random weights starts near ln(classes + 1) + RPN/box/mask terms: a few units.
# Hundreds (or Inf/NaN) mean activations blew up.
MAX_LOSS = 10.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """Small synthetic REFLACX (with MIMIC tables) and PhysioNet-layout VinDr under one root."""
    root = tmp_path_factory.mktemp("cxr_scratch")
    make_reflacx(root, 12, seed=1, size=160)
    make_vindr(root, 10, seed=1, size=160)
    return root


@pytest.fixture(scope="module")
def classification_root(tmp_path_factory):
    """Small synthetic CheXpert, MIMIC-CXR labels (with MIMIC-IV-ED tables), VinDr image labels
    and the 4-class folder of configs/ImageFolder under one root (MIMIC-CXR labels own
    mimic-cxr-jpg/, so not beside REFLACX)."""
    root = tmp_path_factory.mktemp("cxr_scratch_cls")
    make_chexpert(root, 12, seed=1, size=48)
    make_mimic_cxr_labels(root, 12, seed=1, size=48)
    make_vindr_image_labels(root, 12, seed=1, size=64)
    make_image_folder(root, "COVID-19_Radiography_Dataset", 4, seed=1, layout="flat", size=32)
    return root


class _LossRecorder(HookBase):
    def __init__(self):
        self.losses = []

    def after_step(self):
        self.losses.append(self.trainer.storage.latest()["total_loss"][0])


def _train_from_scratch(config, root, out, iterations=4):
    """train_net's set-up and Trainer with ``MODEL.WEIGHTS ""``; the total loss of each iteration."""
    opts = OFFLINE + [
        "CXR.DATASET_ROOT", str(root),
        "OUTPUT_DIR", str(out),
        "DATASETS.TEST", "()",
        "SOLVER.MAX_ITER", str(iterations),
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "1",  # the configs' full learning rate from the 2nd iteration
        "SOLVER.CHECKPOINT_PERIOD", "1000",
        "INPUT.MIN_SIZE_TRAIN", "(128,)",
        "INPUT.MAX_SIZE_TRAIN", "160",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "CXR.CLASSIFIER.INPUT_SIZE", "64",
        "DATALOADER.NUM_WORKERS", "0",
    ]
    cfg = setup(argument_parser().parse_args(["--config-file", str(config), *opts]))
    trainer = Trainer(cfg)
    recorder = _LossRecorder()
    trainer.register_hooks([recorder])
    trainer.resume_or_load(resume=False)
    try:
        trainer.train()
    except FloatingPointError as e:
        pytest.fail(f"{config.name} diverged from scratch after losses {recorder.losses}: {e}")
    finally:
        shutil.rmtree(out, ignore_errors=True)  # an R50 model_final.pth is 100+ MB
    return cfg, recorder.losses


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_config_trains_from_scratch(config, request, tmp_path):
    classifier = get_cxr_cfg(str(config)).MODEL.META_ARCHITECTURE == "ClinicalImageClassifier"
    root = request.getfixturevalue("classification_root" if classifier else "synthetic_root")
    cfg, losses = _train_from_scratch(config, root, tmp_path / "run")
    assert len(losses) == 4
    assert all(math.isfinite(x) and x < MAX_LOSS for x in losses), f"{config.name} from scratch: losses {losses}"
    if cfg.MODEL.BACKBONE.NAME in RESNET_BACKBONES:
        assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.BACKBONE.FREEZE_AT) == ("GN", 0)
        if "fpn" in cfg.MODEL.BACKBONE.NAME:
            assert cfg.MODEL.FPN.NORM == "GN"


def _switch_warnings(caplog):
    # detectron2's log formatter rewrites record.name ("cxr_det." -> "cxr."), hence endswith.
    return [r.getMessage() for r in caplog.records if r.name.endswith("modeling.scratch")]


@pytest.mark.parametrize("config", R50_CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in R50_CONFIGS])
def test_resnet_without_weights_switches_with_one_warning(config, caplog):
    with caplog.at_level(logging.WARNING, logger="cxr_det.modeling.scratch"):
        cfg = model_cfg(str(config), OFFLINE)
    warnings = _switch_warnings(caplog)
    assert len(warnings) == 1
    for key in ("MODEL.WEIGHTS", "MODEL.RESNETS.NORM 'FrozenBN' -> 'GN'", "MODEL.FPN.NORM '' -> 'GN'",
                "MODEL.BACKBONE.FREEZE_AT 2 -> 0", "MODEL.RESNETS.STRIDE_IN_1X1 True -> False"):
        assert key in warnings[0]
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM, cfg.MODEL.BACKBONE.FREEZE_AT, cfg.MODEL.RESNETS.STRIDE_IN_1X1) == (
        "GN", "GN", 0, False)

    caplog.clear()  # the switched config (as recorded in OUTPUT_DIR/config.yaml) stays as it is
    with caplog.at_level(logging.WARNING, logger="cxr_det.modeling.scratch"):
        assert adapt_for_scratch(cfg.clone()) == cfg
    assert not _switch_warnings(caplog)


def _merged(config, opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(opts)
    return adapt_to_device(cfg)


@pytest.mark.parametrize("config", NOT_RESNET, ids=[str(p.relative_to(CONFIG_DIR)) for p in NOT_RESNET])
def test_mobilenet_configs_are_unchanged_from_scratch(config, caplog):
    """MobileNetV3's and torchvision's BatchNorm train; the demo configs (their metrics) must
    stay as they were."""
    with caplog.at_level(logging.WARNING, logger="cxr_det.modeling.scratch"):
        cfg = model_cfg(str(config), OFFLINE)
    assert cfg == _merged(config, OFFLINE)
    assert not _switch_warnings(caplog)


def test_no_switch_with_pretrained_weights():
    config = CONFIG_DIR / "REFLACX/faster_rcnn_R_50_FPN.yaml"
    cfg = model_cfg(str(config))
    assert cfg.MODEL.WEIGHTS.startswith("detectron2://")
    assert scratch_changes(cfg) == []
    assert cfg == _merged(config, [])


def test_keys_set_by_the_user_are_kept():
    cfg = model_cfg(str(CONFIG_DIR / "VinDr/retinanet_R_50_FPN_5cls.yaml"),
                      ["MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", "SyncBN"])
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM, cfg.MODEL.BACKBONE.FREEZE_AT) == ("BN", "SyncBN", 0)
