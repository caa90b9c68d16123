"""Parameter and FLOP counts of a config's model (fvcore), for ``tools/analyze_model.py``.

As detectron2's ``tools/analyze_model.py``: parameters per module (fvcore's
``parameter_count_table``) and inference FLOPs of one blank image (detectron2's
``FlopCountAnalysis``, fvcore's counting: one fused multiply-add = one FLOP). The model is
built without any pretrained weights (nothing is downloaded); its architecture is the
configured one.
"""
from typing import Dict, List, Sequence

import torch
from fvcore.nn import parameter_count_table

from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis

from cxr_det.config import get_cxr_cfg
from cxr_det.engine.machine import adapt_to_machine

__all__ = ["SUMMARY_MODULES", "analysis_config", "analysis_model", "parameter_table", "blank_inputs", "flop_counts"]

# Top-level modules whose FLOPs are listed (those a model has).
SUMMARY_MODULES = ("backbone", "proposal_generator", "roi_heads", "head", "clinical_encoder", "spatial_fusion")


def analysis_config(config_file: str, opts: Sequence[str] = ()):
    """The config of ``config_file`` with ``opts``, adapted to this machine, with the
    pretrained-backbone download off (``CXR.MOBILENET.PRETRAINED``) and, for a clinical model
    without recorded vocabularies, 3 categories per categorical feature (the count of
    parameters depends on them, not on their values)."""
    cfg = adapt_to_machine(get_cxr_cfg(config_file, list(opts)))
    # Counting needs the architecture, not its weights: no ImageNet download (MODEL.WEIGHTS is
    # never loaded here either).
    cfg.CXR.MOBILENET.PRETRAINED = False
    if cfg.CXR.CLINICAL.ENABLED and not cfg.CXR.CLINICAL.CATEGORICAL_SIZES:
        cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [3] * len(cfg.CXR.CLINICAL.CATEGORICAL)
    return cfg


def analysis_model(cfg) -> torch.nn.Module:
    """``cfg``'s model in eval mode, randomly initialised (no weights loaded)."""
    return build_model(cfg).eval()


def parameter_table(model: torch.nn.Module, max_depth: int = 3) -> str:
    """fvcore's table of parameter counts per module, down to ``max_depth`` levels."""
    return parameter_count_table(model, max_depth=max_depth)


def blank_inputs(cfg, height: int, width: int) -> List[dict]:
    """One all-zero image of ``height`` x ``width`` pixels (1 channel for ``INPUT.FORMAT`` L,
    else 3) as detectron2 model input, with all-missing clinical values when the model
    uses them."""
    channels = 1 if cfg.INPUT.FORMAT == "L" else 3
    inputs = [{"image": torch.zeros(channels, height, width), "height": height, "width": width}]
    if cfg.CXR.CLINICAL.ENABLED:
        n, m = len(cfg.CXR.CLINICAL.NUMERIC), len(cfg.CXR.CLINICAL.CATEGORICAL)
        inputs[0]["clinical"] = {"numeric": torch.zeros(n), "missing": torch.ones(n),
                                 "categorical": torch.zeros(m, dtype=torch.int64)}
    return inputs


def flop_counts(model: torch.nn.Module, inputs: List[dict]) -> Dict[str, float]:
    """FLOPs of one inference on ``inputs``: ``{"total": n, <module of SUMMARY_MODULES>: n}``
    (FLOPs, not GFLOPs; modules the model lacks are left out). Unsupported-operator warnings
    are off."""
    flops = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_module = {k.split("model.", 1)[-1]: v for k, v in flops.by_module().items()}
    counts = {"total": flops.total()}
    counts.update({name: by_module[name] for name in SUMMARY_MODULES if name in by_module})
    return counts
