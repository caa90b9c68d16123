"""The evaluation's options come from one table (config keys, EvalOptions, tool flags), the
protocols from one registry, and the COCO metrics from our own reading of COCOeval (issue 11,
item 8)."""
import argparse
import logging

import pytest

import cxr_det  # noqa: F401
from detectron2.config import get_cfg

from cxr_det.config import CXR_EVAL_OPTIONS, CXR_EVAL_PROTOCOLS, add_cxr_eval_config
from cxr_det.evaluation import PROTOCOLS, EvalOptions, Protocol, register_protocol
from cxr_det.evaluation.coco import derive_coco_metrics, predictions_to_coco_results, records_to_coco
from cxr_det.evaluation.options import add_option_flags, flag_name, options_from_args
from helpers import load_tool
from test_cxr_evaluator import CLASSES, _coco_fixture, pycocotools_eval


def _parser():
    return add_option_flags(argparse.ArgumentParser())


def test_every_option_is_a_key_a_field_and_a_flag():
    cfg = add_cxr_eval_config(get_cfg())
    node = cfg.TEST.CXR_EVAL
    defaults = EvalOptions()
    fields = list(EvalOptions.__dataclass_fields__)
    assert fields == [o["name"] for o in CXR_EVAL_OPTIONS]
    assert sorted(node) == sorted(name.upper() for name in fields)
    parser = _parser()
    flags = {a.dest: a for a in parser._actions}
    for option in CXR_EVAL_OPTIONS:
        name = option["name"]
        expected = list(option["default"]) if option.get("many") else option["default"]
        assert node[name.upper()] == expected, name
        value = getattr(defaults, name)
        assert (list(value) if option.get("many") else value) == expected, name
        assert flag_name(name) in flags[name].option_strings, name
        assert option["protocol"] in (None, *CXR_EVAL_PROTOCOLS), name
    # no flags: the config's defaults, except the tool's bootstrap
    from_flags = options_from_args(parser.parse_args([]))
    assert from_flags == EvalOptions(bootstrap=1000)
    tool_args = load_tool("evaluate").parse_args(["--gt", "g.json", "--predictions", "p.json", "--output", "out"])
    assert options_from_args(tool_args) == from_flags
    assert EvalOptions.from_cfg(cfg) == defaults


def test_flags_and_values_are_checked_once():
    args = _parser().parse_args(["--no-plots", "--coco-backend", "pycocotools", "--iobb-max-dets", "0",
                                 "--froc-fps", "1", "2", "--protocols", "froc", "coco"])
    options = options_from_args(args)
    assert (options.plots, options.use_faster_coco_eval, options.iobb_max_dets) == (False, False, None)
    assert options.froc_fps == (1.0, 2.0) and options.protocols == ("froc", "coco")
    assert EvalOptions(image_thresholds=0.3).image_thresholds == (0.3,)
    assert EvalOptions(froc_rule="LUNA16").froc_rule == "luna16"
    with pytest.raises(ValueError, match=r"TEST\.CXR_EVAL\.VINBIGDATA_IOU"):
        EvalOptions(vinbigdata_iou=-0.1)
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        EvalOptions(protocols=("coco", "kaggle"))
    with pytest.raises(TypeError):
        EvalOptions(froc_iuo=0.5)  # a misspelt option is not ignored


def test_registry_holds_every_configured_protocol_once():
    assert sorted(PROTOCOLS) == sorted(CXR_EVAL_PROTOCOLS)
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name and protocol.titles
    with pytest.raises(ValueError, match="registered twice"):
        register_protocol(PROTOCOLS["froc"])
    with pytest.raises(ValueError, match="CXR_EVAL_PROTOCOLS"):
        register_protocol(Protocol(name="dice", run=lambda inputs, options: ({}, {}), titles={"dice": "Dice"}))


def test_coco_metrics_equal_detectron2s_derivation():
    """Our reading of COCOeval gives detectron2 COCOEvaluator's numbers (its private
    ``_derive_coco_results``, the reference the earlier subclass used), key for key."""
    from detectron2.evaluation import COCOEvaluator

    reference = COCOEvaluator.__new__(COCOEvaluator)
    reference._logger = logging.getLogger("detectron2.evaluation.coco_evaluation")
    records, predictions = _coco_fixture(seed=2)
    coco_gt = records_to_coco(records, CLASSES)
    results = predictions_to_coco_results(predictions)
    for task in ("bbox", "segm"):
        ev = pycocotools_eval(coco_gt, results, task)
        ours = derive_coco_metrics(ev, CLASSES)
        theirs = reference._derive_coco_results(ev, task, class_names=CLASSES)
        assert list(ours)[: len(theirs)] == list(theirs)
        assert all(ours[k] == theirs[k] or (ours[k] != ours[k] and theirs[k] != theirs[k]) for k in theirs)
        assert [k for k in ours if k not in theirs] == [f"AP50-{c}" for c in CLASSES]
    assert list(derive_coco_metrics(None, CLASSES)) == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
