"""COCO evaluation with per-class AP50 and annotations converted fresh for every run."""
import os

import numpy as np
from tabulate import tabulate

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator

from cxr_det.compat import has_compiled_extension


class CXRCOCOEvaluator(COCOEvaluator):
    """detectron2's COCOEvaluator, adding per-class AP50 (``AP50-<class>``) to the results.

    Ground truth of a registered (non-COCO) dataset is converted to COCO JSON anew each
    time, so a changed class set or reader mode never meets a stale cached file. Uses the
    official pycocotools COCOeval unless detectron2's C++ extension is installed.
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, **kwargs):
        metadata = MetadataCatalog.get(dataset_name)
        if not hasattr(metadata, "json_file") and output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
            cache_path = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
            convert_to_coco_json(dataset_name, cache_path, allow_cached=False)
            metadata.json_file = cache_path
        kwargs.setdefault("use_fast_impl", has_compiled_extension())
        super().__init__(dataset_name, tasks=tasks, distributed=distributed, output_dir=output_dir, **kwargs)

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if coco_eval is None or not class_names or len(class_names) <= 1:
            return results
        precisions = coco_eval.eval["precision"]  # (iou, recall, class, area, max dets)
        iou50 = int(np.argmin(np.abs(coco_eval.params.iouThrs - 0.5)))
        rows = []
        for idx, name in enumerate(class_names):
            p = precisions[iou50, :, idx, 0, -1]
            p = p[p > -1]
            ap50 = float(np.mean(p) * 100) if p.size else float("nan")
            results[f"AP50-{name}"] = ap50
            rows.append((name, results.get(f"AP-{name}", float("nan")), ap50))
        table = tabulate(rows, headers=["category", "AP", "AP50"], tablefmt="pipe", floatfmt=".3f", numalign="left")
        self._logger.info(f"Per-category {iou_type} AP and AP50:\n{table}")
        return results
