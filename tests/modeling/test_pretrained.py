"""Offline: a failed download of pretrained weights names the fix, and counting a model's
FLOPs downloads nothing. Downloads are made to fail by an unreachable proxy and an empty
torch hub cache, so these tests behave the same with or without network access."""
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401
from detectron2.modeling import build_model

from cxr_det.modeling.pretrained import explain_download_error, is_remote
from helpers import load_tool, model_cfg

ROOT = Path(__file__).resolve().parents[2]
MOBILENET_CONFIG = ROOT / "configs/REFLACX/faster_rcnn_MNv3_FPN.yaml"  # CXR.MOBILENET.PRETRAINED True
R50_CONFIG = ROOT / "configs/VinDr/retinanet_R_50_FPN_5cls.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every HTTP(S) download refused (a proxy on a closed port), nothing in torch hub's cache."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # urllib builds its global opener, with the proxies of that moment, on first use: put the
    # previous one back afterwards so the dead proxy does not outlive the test.
    monkeypatch.setattr(urllib.request, "_opener", None)


def test_failed_mobilenet_download_names_the_fix(offline, tmp_path):
    cfg = model_cfg(str(MOBILENET_CONFIG))
    assert cfg.CXR.MOBILENET.PRETRAINED
    with pytest.raises(RuntimeError) as info:
        build_model(cfg)
    message = str(info.value)
    assert "CXR.MOBILENET.PRETRAINED False" in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "mobilenet_v3_large-") in message
    assert "https://download.pytorch.org/models/mobilenet_v3_large" in message
    assert isinstance(info.value.__cause__, OSError)


def test_failed_weights_download_names_the_fix():
    cfg = model_cfg(str(R50_CONFIG))
    message = str(explain_download_error(urllib.error.URLError("Name or service not known"), cfg))
    assert "MODEL.WEIGHTS asks for (detectron2://ImageNetPretrained/MSRA/R-50.pkl)" in message
    assert "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl" in message
    assert "MODEL.WEIGHTS /path/to/R-50.pkl" in message
    assert 'MODEL.WEIGHTS ""' in message
    assert "Name or service not known" in message
    assert "CXR.MOBILENET" not in message


def test_failed_download_lists_every_download_of_the_config():
    cfg = model_cfg(str(MOBILENET_CONFIG), ["MODEL.WEIGHTS", "https://example.org/cxr/model.pth"])
    message = str(explain_download_error(OSError("timed out"), cfg))
    assert "MODEL.WEIGHTS /path/to/model.pth" in message
    assert "CXR.MOBILENET.PRETRAINED False" in message


@pytest.mark.parametrize("path, remote", [("detectron2://ImageNetPretrained/MSRA/R-50.pkl", True),
                                          ("https://x.org/m.pth", True), ("file:///tmp/m.pth", False),
                                          ("output/model_final.pth", False), ("", False)])
def test_is_remote(path, remote):
    assert is_remote(path) == remote


def test_analyze_model_counts_without_downloading(offline, monkeypatch, capsys):
    module = load_tool("analyze_model")
    monkeypatch.setattr(sys, "argv", ["analyze_model.py", "--config-file", str(MOBILENET_CONFIG),
                                      "--tasks", "parameter", "--max-depth", "1"])
    module.main()
    assert "backbone" in capsys.readouterr().out


def test_train_net_offline_with_model_zoo_weights_names_the_fix(offline, monkeypatch, tmp_path):
    """The user's path: an R50 config whose MODEL.WEIGHTS is detectron2:// with no network."""
    from cxr_det.synthetic import make_reflacx
    from cxr_det.engine import Trainer, argument_parser, setup

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "fvcore_cache"))
    make_reflacx(tmp_path / "data", 12, seed=1, size=128)
    args = argument_parser().parse_args([
        "--config-file", str(ROOT / "configs/REFLACX/faster_rcnn_R_50_FPN.yaml"),
        "CXR.DATASET_ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu",
        "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "1"])
    trainer = Trainer(setup(args))
    with pytest.raises(RuntimeError) as info:
        trainer.resume_or_load(resume=False)
    message = str(info.value)
    assert "MODEL.WEIGHTS /path/to/R-50.pkl" in message and 'MODEL.WEIGHTS ""' in message
