#!/usr/bin/env python
"""Parameter and FLOP counts of a config's model (fvcore), like detectron2's analyze_model.

The model is built without any pretrained weights (nothing is downloaded); its architecture
is the configured one.

    tools/analyze_model.py --config-file cfg.yaml [--tasks parameter flop] [--height 512 --width 512]
"""
import argparse

import torch
from fvcore.nn import parameter_count_table

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis

from cxr_det.engine import adapt_to_machine, get_cxr_cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--tasks", nargs="+", default=["parameter", "flop"], choices=["parameter", "flop"])
    parser.add_argument("--height", type=int, default=0, help="input height (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--width", type=int, default=0, help="input width (default = height)")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth of the parameter table")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = adapt_to_machine(get_cxr_cfg(args.config_file, args.opts))
    # Counting needs the architecture, not its weights: no ImageNet download (MODEL.WEIGHTS is
    # never loaded here either).
    cfg.CXR.MOBILENET.PRETRAINED = False
    if cfg.CXR.CLINICAL.ENABLED and not cfg.CXR.CLINICAL.CATEGORICAL_SIZES:
        cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [3] * len(cfg.CXR.CLINICAL.CATEGORICAL)
    model = build_model(cfg).eval()
    if "parameter" in args.tasks:
        print(parameter_count_table(model, max_depth=args.max_depth))
    if "flop" in args.tasks:
        height = args.height or cfg.INPUT.MIN_SIZE_TEST
        width = args.width or height
        channels = 1 if cfg.INPUT.FORMAT == "L" else 3
        inputs = [{"image": torch.zeros(channels, height, width), "height": height, "width": width}]
        if cfg.CXR.CLINICAL.ENABLED:
            n, m = len(cfg.CXR.CLINICAL.NUMERIC), len(cfg.CXR.CLINICAL.CATEGORICAL)
            inputs[0]["clinical"] = {"numeric": torch.zeros(n), "missing": torch.ones(n), "categorical": torch.zeros(m, dtype=torch.int64)}
        flops = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        print(f"\nGFLOPs for one {height}x{width} image (inference): {flops.total() / 1e9:.3f}")
        by_module = {k.split("model.", 1)[-1]: v for k, v in flops.by_module().items()}
        for name in ("backbone", "proposal_generator", "roi_heads", "head", "clinical_encoder", "spatial_fusion"):
            if name in by_module:
                print(f"  {name:<20} {by_module[name] / 1e9:.3f}")


if __name__ == "__main__":
    main()
