"""Pairwise overlap of axis-aligned boxes in numpy: the one implementation used by the
registrars (reader fusion), the synthetic renderer, the visualizer and the evaluation
protocols.

Boxes are absolute ``XYXY`` pixel coordinates (``x0, y0, x1, y1``, ``x1 >= x0``); a box with
non-positive width or height has area 0. Tensors on the model side use detectron2's
``pairwise_iou`` / ``pairwise_ioa`` instead.

The overlap measures:

* IoU, intersection over union (PASCAL VOC, Everingham et al., IJCV 2010);
* IoA, intersection over the area of the *first* box. With predictions first this is
  MDF-Net's "intersection over the predicted bounding box" (IoBB; Hsieh et al., "MDF-Net",
  Scientific Reports 13:15873, 2023), the same quantity as detectron2's ``pairwise_ioa`` with the
  arguments swapped.
"""
import numpy as np

__all__ = ["as_boxes", "box_area", "box_intersection", "box_iou", "box_ioa"]


def as_boxes(boxes) -> np.ndarray:
    """``boxes`` (one box or any sequence of boxes) as a float64 array of shape (N, 4)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_area(boxes) -> np.ndarray:
    """Areas, shape (N,), in square pixels; 0 for degenerate boxes."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_intersection(a, b) -> np.ndarray:
    """Intersection areas, (N, 4) x (M, 4) -> (N, M), in square pixels."""
    a, b = as_boxes(a), as_boxes(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(a, b) -> np.ndarray:
    """Intersection over union, (N, 4) x (M, 4) -> (N, M), values in [0, 1]; 0 where the
    union is empty. A single box may be given as a flat sequence of 4 numbers."""
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_ioa(a, b) -> np.ndarray:
    """Intersection over the area of each box of ``a``, (N, 4) x (M, 4) -> (N, M), values in
    [0, 1]; 0 where that box is empty. A small box of ``a`` inside a large box of ``b`` scores 1."""
    inter = box_intersection(a, b)
    area = np.broadcast_to(box_area(a)[:, None], inter.shape)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
