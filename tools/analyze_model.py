#!/usr/bin/env python
"""Parameter and FLOP counts of a config's model (fvcore), like detectron2's analyze_model.

The model is built without any pretrained weights (nothing is downloaded); its architecture
is the configured one.

    tools/analyze_model.py --config-file cfg.yaml [--tasks parameter flop] [--height 512 --width 512]
"""
import argparse

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from cxr_det.engine.model_analysis import analysis_config, analysis_model, blank_inputs, flop_counts, parameter_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--tasks", nargs="+", default=["parameter", "flop"], choices=["parameter", "flop"])
    parser.add_argument("--height", type=int, default=0, help="input height (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--width", type=int, default=0, help="input width (default = height)")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth of the parameter table")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = analysis_config(args.config_file, args.opts)
    model = analysis_model(cfg)
    if "parameter" in args.tasks:
        print(parameter_table(model, args.max_depth))
    if "flop" in args.tasks:
        height = args.height or cfg.INPUT.MIN_SIZE_TEST
        width = args.width or height
        counts = flop_counts(model, blank_inputs(cfg, height, width))
        print(f"\nGFLOPs for one {height}x{width} image (inference): {counts.pop('total') / 1e9:.3f}")
        for name, flops in counts.items():
            print(f"  {name:<20} {flops / 1e9:.3f}")


if __name__ == "__main__":
    main()
