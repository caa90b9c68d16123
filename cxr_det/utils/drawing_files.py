"""The PNG files of the drawing tools: a dataset's ground truth, a run's results beside the
ground truth, one image's predictions.

Used by ``tools/visualize_data.py``, ``tools/visualize_json_results.py`` and
``tools/predict.py``. Every picture is drawn at least :data:`~cxr_det.utils.drawing.MIN_LONG_SIDE`
pixels on its long side, with a title strip; files are RGB PNGs encoded with OpenCV and
written atomically (:func:`write_png`).
"""
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from detectron2.structures import BoxMode

from cxr_det.utils.atomic import atomic_write_bytes
from cxr_det.utils.drawing import MIN_LONG_SIDE, side_by_side
from cxr_det.utils.visualizer import (
    draw_predictions,
    ground_truth_title,
    load_rgb,
    predictions_title,
    render_ground_truth,
    render_predictions,
)

__all__ = [
    "drawing_file_name",
    "draw_dataset",
    "results_by_image",
    "draw_results",
    "prediction_drawing",
    "write_png",
]


def drawing_file_name(record: dict) -> str:
    """The PNG name of a dataset dict's drawing: ``<image_id:05d>_<file stem>.png`` for an
    integer ``image_id``, ``<image_id>_<file stem>.png`` for a text one, ``<file stem>.png``
    when the id is the stem (VinDr image ids)."""
    stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
    image_id = record["image_id"]
    prefix = f"{image_id:05d}" if isinstance(image_id, int) else str(image_id)
    return f"{prefix}_{stem}.png" if prefix != stem else f"{stem}.png"


def write_png(path: str, image_rgb: np.ndarray) -> str:
    """Write an RGB image (HxWx3 uint8; or HxW grey) as a PNG, atomically: a reader never
    sees half a file, and a failure leaves an earlier file at ``path`` whole. Returns ``path``.

    Raises:
        ValueError: OpenCV cannot encode the array as a PNG (wrong dtype or channel count).
    """
    pixels = image_rgb[:, :, ::-1] if image_rgb.ndim == 3 else image_rgb
    try:
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
    except cv2.error as e:
        ok, error = False, e
    else:
        error = ""
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {image_rgb.dtype} array of shape {image_rgb.shape} as "
                         f"PNG {str(error).strip()}".rstrip())
    return atomic_write_bytes(path, encoded.tobytes())


def _ground_truth_count(record: dict) -> int:
    return sum(not a.get("iscrowd", 0) for a in record.get("annotations", []))


def draw_dataset(records: Sequence[dict], class_names: Sequence[str], output_dir: str, *,
                 show_readers: bool = True, scale: float = 1.0, desc: str = "drawing") -> int:
    """Draw each dataset dict's ground truth (:func:`~cxr_det.utils.visualizer.render_ground_truth`,
    titled "Ground truth (n boxes)") to ``output_dir/<drawing_file_name>``.

    Args:
        records: detectron2 dataset dicts (``file_name``, ``image_id``, ``annotations``).
        class_names: name of each ``category_id``.
        show_readers: name the readers on labels.
        scale: output scale (> 0) after small images are upscaled to ``MIN_LONG_SIDE``.
        desc: the progress bar's text.

    Returns:
        the number of files written.

    Raises:
        OSError / ValueError: an image that cannot be read (named by the reader).
    """
    os.makedirs(output_dir, exist_ok=True)
    for record in tqdm(records, desc=desc):
        drawn = render_ground_truth(
            load_rgb(record["file_name"]), record, class_names, show_readers, scale,
            min_long_side=MIN_LONG_SIDE, title=ground_truth_title(_ground_truth_count(record)),
        ).image
        write_png(os.path.join(output_dir, drawing_file_name(record)), drawn)
    return len(records)


def results_by_image(results: Sequence[dict], records: Sequence[dict], conf_threshold: float,
                     source: str = "results", dataset: str = "the dataset") -> Dict[object, List[dict]]:
    """COCO-format results (``image_id``, ``category_id``, ``bbox`` XYWH, ``score``) scoring at
    least ``conf_threshold``, grouped by ``image_id``.

    Raises:
        ValueError: a result's ``image_id`` is not among ``records`` (message names ``source``
            and ``dataset``): the results were made on another dataset or with other options.
    """
    by_image = defaultdict(list)
    for r in results:
        if r["score"] >= conf_threshold:
            by_image[r["image_id"]].append(r)
    known = {r["image_id"] for r in records}
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} image_id(s) not in dataset {dataset} (e.g. {sorted(unknown)[:3]}); "
            "were the results made on another dataset or with other CXR.* options?"
        )
    return by_image


def draw_results(records: Sequence[dict], by_image: Dict[object, List[dict]], class_names: Sequence[str],
                 output_dir: str, conf_threshold: float, max_drawn: int = 20) -> int:
    """Draw ground truth (left) and predictions (right) of each record side by side to
    ``output_dir/<drawing_file_name>``.

    Args:
        records: detectron2 dataset dicts; by_image: :func:`results_by_image`'s output.
        conf_threshold: the cut the results were filtered at (shown in the title).
        max_drawn: predicted boxes drawn per image at most, best first (negative: none).

    Returns:
        the number of files written.
    """
    os.makedirs(output_dir, exist_ok=True)
    for record in tqdm(records, desc="drawing"):
        image = load_rgb(record["file_name"])
        above = sorted(by_image.get(record["image_id"], []), key=lambda p: -p["score"])
        preds = above[: max(max_drawn, 0)]
        boxes = [BoxMode.convert(p["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for p in preds]
        gt = render_ground_truth(image, record, class_names, show_readers=False, min_long_side=MIN_LONG_SIDE,
                                 title=ground_truth_title(_ground_truth_count(record)))
        pr = render_predictions(image, np.asarray(boxes), [p["score"] for p in preds], [p["category_id"] for p in preds],
                                class_names, min_long_side=MIN_LONG_SIDE,
                                title=predictions_title(len(above), conf_threshold)
                                + (f", best {len(preds)} drawn" if len(preds) < len(above) else ""))
        write_png(os.path.join(output_dir, drawing_file_name(record)), side_by_side(gt.image, pr.image))
    return len(records)


def prediction_drawing(image_rgb: np.ndarray, result: dict, class_names: Sequence[str], name: str,
                       conf_threshold: Optional[float] = None, max_drawn: int = 20) -> np.ndarray:
    """One image's predictions drawn, titled ``"<name> - Predictions, score ≥ t (n)"``.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 RGB in the frame of the boxes.
        result: :func:`cxr_det.engine.inference.prediction_record`'s output (``instances``
            with ``bbox`` XYXY absolute pixels, ``score`` in [0, 1], ``category_id``).
        max_drawn: at most this many boxes, best first (the title says how many when fewer
            than all are drawn).

    Returns:
        ``(H', W', 3)`` uint8 RGB.
    """
    shown = sorted(result["instances"], key=lambda d: -d["score"])[: max(max_drawn, 0)]
    title = f"{name} - {predictions_title(len(result['instances']), conf_threshold)}"
    if len(shown) < len(result["instances"]):
        title += f", best {len(shown)} drawn"
    return draw_predictions(image_rgb, [d["bbox"] for d in shown], [d["score"] for d in shown],
                            [d["category_id"] for d in shown], class_names, min_long_side=MIN_LONG_SIDE, title=title)
