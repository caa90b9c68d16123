"""Model section of ``tools/benchmark.py``: training seconds per iteration and inference
milliseconds per image of the demo, REFLACX and VinDr detectors, image-only and clinical
(the fusion overhead), their FLOPs per image (fvcore) and the share of this machine's
matrix-multiply peak they achieve.

Each config is built as configured (R50 backbones with their frozen BatchNorm, as with
ImageNet weights; nothing is downloaded: the weights are random), on synthetic radiographs
(:func:`cxr_det.synthetic.render_image`) with their lesion boxes as ground truth. A training
step is forward, backward and an SGD step with learning rate 0 (random frozen-BatchNorm
weights diverge within a few steps at any other rate, which would time NaNs); the step costs
the same at any rate. The twins' steps are interleaved, so that both see the same machine
load, and each figure is the median of the timed steps. FLOPs are fvcore's count of one
inference (one fused multiply-add = one FLOP, :mod:`cxr_det.engine.model_analysis`); the
training figure takes a step as 3x the inference FLOPs (backward ~ 2x forward), an
approximation.
"""
import gc
import logging
from contextlib import nullcontext
from typing import Dict, List, Sequence

import numpy as np
import torch

import cxr_det  # noqa: F401  (detectron2 compatibility fixes before detectron2 is imported)
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_det.engine.model_analysis import analysis_config, flop_counts
from cxr_det.synthetic import REFLACX_CLASS_PAINTERS, VINDR_CLASS_PAINTERS, render_image

from benchmarks.perf_common import ROOT, Section, matmul_peak, median, time_calls

__all__ = ["FAMILIES", "TimingModel", "synthetic_inputs", "run_models"]

logger = logging.getLogger(__name__)

# family -> (image-only config, clinical config, lesion painters of its synthetic images)
FAMILIES = {
    "demo": ("configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml",
             "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml", REFLACX_CLASS_PAINTERS),
    "REFLACX": ("configs/REFLACX/faster_rcnn_R_50_FPN.yaml", "configs/REFLACX/faster_rcnn_R_50_FPN_clinical.yaml",
                REFLACX_CLASS_PAINTERS),
    "VinDr": ("configs/VinDr/retinanet_R_50_FPN_14cls.yaml", "configs/VinDr/retinanet_R_50_FPN_14cls_clinical.yaml",
              VINDR_CLASS_PAINTERS),
}


def _num_classes(cfg) -> int:
    return int(cfg.MODEL.RETINANET.NUM_CLASSES if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE
               else cfg.MODEL.ROI_HEADS.NUM_CLASSES)


def synthetic_inputs(cfg, size: int, count: int, painters, seed: int = 0, train: bool = True) -> List[dict]:
    """``count`` model inputs of ``size`` x ``size`` px: a synthetic radiograph with 1-3
    lesions (``painters``: the class painters of :mod:`cxr_det.synthetic.render`) as a uint8
    tensor in ``INPUT.FORMAT``, its boxes as ``instances`` (``train``; random class indices of
    the config's classes) and, for a clinical model, clinical tensors (standard-normal numeric
    values, none missing, category 0)."""
    rng = np.random.default_rng(seed)
    names = sorted(painters)
    channels = 1 if cfg.INPUT.FORMAT == "L" else 3
    out = []
    for _ in range(count):
        lesions = [names[i] for i in rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False)]
        pixels, _, placed = render_image(rng, size, lesions, class_painters=painters, height=size, width=size)
        gray = torch.as_tensor(np.rint(pixels * 255).astype(np.uint8))
        item = {"image": gray[None].repeat(channels, 1, 1), "height": size, "width": size}
        if train:
            inst = Instances((size, size))
            boxes = [box for _, box in placed] or [[size * 0.3, size * 0.3, size * 0.6, size * 0.6]]
            inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
            inst.gt_classes = torch.as_tensor(rng.integers(0, _num_classes(cfg), size=len(boxes)), dtype=torch.int64)
            item["instances"] = inst
        if cfg.CXR.CLINICAL.ENABLED:
            n, m = len(cfg.CXR.CLINICAL.NUMERIC), len(cfg.CXR.CLINICAL.CATEGORICAL)
            item["clinical"] = {"numeric": torch.as_tensor(rng.standard_normal(n), dtype=torch.float32),
                                "missing": torch.zeros(n), "categorical": torch.zeros(m, dtype=torch.int64)}
        out.append(item)
    return out


class TimingModel:
    """A config's model built for timing (random weights, SGD at learning rate 0; see the
    module docstring) on ``device``, with AMP (float16 autocast and a gradient scaler, as
    detectron2's ``AMPTrainer``) when ``amp`` and the device is CUDA."""

    def __init__(self, cfg, device: str, amp: bool = False):
        cfg = cfg.clone()
        cfg.MODEL.DEVICE = device
        torch.manual_seed(0)
        self.device = device
        self.amp = bool(amp) and str(device).startswith("cuda")
        self.model = build_model(cfg)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=0.9,
                                         weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def train_step(self, batch: Sequence[dict]) -> None:
        """One training iteration on ``batch`` (a list of model inputs with ``instances``)."""
        self.model.train()
        with EventStorage(0), self._autocast():
            loss = sum(self.model(list(batch)).values())
        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def train_seconds(self, warmup_batch, batches) -> List[float]:
        """Seconds of a training step on each of ``batches``, after one on ``warmup_batch``."""
        self.train_step(warmup_batch)
        out = []
        for batch in batches:
            out.append(self.time_train_step(batch))
        return out

    def time_train_step(self, batch) -> float:
        """Seconds of one training step on ``batch``."""
        return time_calls(lambda: self.train_step(batch), 1, warmup=0, device=self.device)[0]

    def infer(self, batch) -> None:
        """One inference of ``batch`` (no gradients)."""
        self.model.eval()
        with torch.no_grad(), self._autocast():
            self.model(list(batch))

    def flops(self, inputs) -> float:
        """fvcore FLOPs of one inference on ``inputs`` (one image)."""
        self.model.eval()
        items = [{k: v for k, v in item.items() if k != "instances"} for item in inputs]
        with torch.no_grad():
            return float(flop_counts(self.model, items)["total"])


def _family_timings(name, size, batch, steps, infer_images, device, amp, seed=0) -> Dict[str, dict]:
    """Interleaved train and inference timings and FLOPs of one family's twins."""
    image_only, clinical, painters = FAMILIES[name]
    models, inputs = {}, {}
    for variant, config in (("image-only", image_only), ("clinical", clinical)):
        cfg = analysis_config(str(ROOT / config), ["MODEL.DEVICE", device])
        models[variant] = TimingModel(cfg, device, amp)
        inputs[variant] = (synthetic_inputs(cfg, size, batch, painters, seed),
                           synthetic_inputs(cfg, size, 1, painters, seed + 1, train=False))
    for variant, model in models.items():  # warm-up: allocations, lazy initialisation
        model.train_step(inputs[variant][0])
        model.infer(inputs[variant][1])
    train = {variant: [] for variant in models}
    infer = {variant: [] for variant in models}
    for _ in range(steps):
        for variant, model in models.items():
            train[variant].append(model.time_train_step(inputs[variant][0]))
    for _ in range(infer_images):
        for variant, model in models.items():
            infer[variant].extend(time_calls(lambda: model.infer(inputs[variant][1]), 1, warmup=0, device=device))
    out = {}
    for variant, model in models.items():
        out[variant] = {
            "config": FAMILIES[name][0 if variant == "image-only" else 1],
            "train_s_per_iter": median(train[variant]), "train_steps": train[variant],
            "infer_s_per_image": median(infer[variant]), "infer_times": infer[variant],
            "flops_per_image": model.flops(inputs[variant][1]),
        }
    del models
    gc.collect()
    return out


def run_models(settings, device: str, amp: bool) -> Section:
    """The model section: ``settings`` is the mode's ``models`` settings of
    :mod:`benchmarks.performance` (sizes and batches per family, timed steps, inference images)."""
    s = settings
    print(f"  matmul peak on {device} ...", flush=True)
    peaks = [matmul_peak(device)]
    results = {}
    for name in FAMILIES:
        size, batch = s["size"][name], s["batch"][name]
        print(f"  {name}: {size} px, batch {batch}, {s['steps']} steps, {s['infer_images']} inference images ...",
              flush=True)
        results[name] = _family_timings(name, size, batch, s["steps"], s["infer_images"], device, amp)
    peaks.append(matmul_peak(device))
    peak = max(peaks)  # the less disturbed of two probes, before and after
    rows, data = [], {"matmul_peak_multiply_adds_per_s": peak, "matmul_probes": peaks, "families": {}}
    for name, result in results.items():
        size, batch = s["size"][name], s["batch"][name]
        data["families"][name] = {"size": size, "batch": batch, **result}
        base = result["image-only"]
        for variant, r in result.items():
            flops = r["flops_per_image"]
            infer_rate = flops / r["infer_s_per_image"]
            train_rate = 3 * flops * batch / r["train_s_per_iter"]
            rows.append([
                name, variant, f"{size}x{size}", batch, r["train_s_per_iter"], batch / r["train_s_per_iter"],
                1000 * r["infer_s_per_image"],
                r["train_s_per_iter"] / base["train_s_per_iter"], r["infer_s_per_image"] / base["infer_s_per_image"],
                flops / 1e9, infer_rate / 1e9, 100 * infer_rate / peak, 100 * train_rate / peak,
            ])
    headers = ["family", "model", "input", "batch", "train s/iter", "train images/s", "inference ms/image",
               "train / image-only", "inference / image-only", "GFLOPs/image", "inference GFLOP/s",
               "% of peak (inference)", "% of peak (train, 3x)"]
    notes = [
        f"peak: float32 2048x2048 matmul on {device} with {torch.get_num_threads()} torch threads, the better of a "
        f"probe before and after the models = {peak / 1e9:.1f} G multiply-adds/s (fvcore's FLOP = one multiply-add; "
        f"vendors' FLOP/s count two)",
        f"median of {s['steps']} training steps and {s['infer_images']} inference images per model after one "
        f"untimed each, twins interleaved; {'AMP on' if amp and str(device).startswith('cuda') else 'float32'}",
        "configs: " + "; ".join(f"{name}: {', '.join(FAMILIES[name][:2])}" for name in FAMILIES)
        + "; the image-only ones are detectron2's own GeneralizedRCNN / RetinaNet, the clinical ones cxr_det's "
        "fusion twins",
    ]
    return Section("train", "Training and inference time, FLOPs, fusion overhead", headers, rows, notes, data)
