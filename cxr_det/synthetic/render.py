"""Chest-like synthetic radiographs: a background (:mod:`.anatomy`) with lesions painted
on it, one painter per visual pattern (:mod:`.painters`, :mod:`.lung_painters`).

:data:`PAINTERS` names the painters; :data:`REFLACX_CLASS_PAINTERS` and
:data:`VINDR_CLASS_PAINTERS` map each class of REFLACX and of VinDr-CXR's Kaggle release to
its painter, so detectors trained on the synthetic datasets have something real (if
simple) to learn. :func:`render_image` composes a background and its lesions and reports
each lesion's true box.
"""
import numpy as np

from cxr_det.synthetic import lung_painters, painters
from cxr_det.synthetic.anatomy import random_image_size, render_background
from cxr_det.utils.boxes import box_iou

__all__ = [
    "PAINTERS",
    "REFLACX_CLASS_PAINTERS",
    "VINDR_CLASS_PAINTERS",
    "paint_lesion",
    "render_image",
    "to_uint8",
]

# Painter name -> painter(img, anat, rng, **params) -> Paint | None.
PAINTERS = {
    "cardiac": painters.paint_cardiac,
    "band": lung_painters.paint_band,
    "meniscus": painters.paint_meniscus,
    "patchy": lung_painters.paint_patchy,
    "disc": lung_painters.paint_disc,
    "pneumothorax": painters.paint_pneumothorax,
    "hilum": painters.paint_hilum,
    "mediastinum": painters.paint_mediastinum,
    "aortic_knob": painters.paint_aortic_knob,
    "fracture": painters.paint_fracture,
    "haze": lung_painters.paint_haze,
    "hernia": painters.paint_hernia,
    "bullae": lung_painters.paint_bullae,
    "reticular": lung_painters.paint_reticular,
    "calcification": lung_painters.paint_calcification,
    "streaky": lung_painters.paint_streaky,
    "ring": lung_painters.paint_ring,
    "pleural_strip": painters.paint_pleural_strip,
    "device": painters.paint_device,
}

# Class name -> (painter name, painter keyword arguments).
REFLACX_CLASS_PAINTERS = {
    "Abnormal mediastinal contour": ("mediastinum", {}),
    "Acute fracture": ("fracture", {}),
    "Atelectasis": ("band", {}),
    "Consolidation": ("patchy", {}),
    "Enlarged cardiac silhouette": ("cardiac", {}),
    "Enlarged hilum": ("hilum", {}),
    "Groundglass opacity": ("haze", {"strength": (0.10, 0.15)}),
    "Hiatal hernia": ("hernia", {}),
    "High lung volume / emphysema": ("bullae", {}),
    "Interstitial lung disease": ("reticular", {"coarse": False}),
    "Lung nodule or mass": ("disc", {"radius_range": (12, 30)}),
    "Pleural abnormality": ("meniscus", {}),
    "Pneumothorax": ("pneumothorax", {}),
    "Pulmonary edema": ("patchy", {}),  # deliberately identical to Consolidation
    "Support devices": ("device", {}),
}

VINDR_CLASS_PAINTERS = {
    "Aortic enlargement": ("aortic_knob", {}),
    "Atelectasis": ("band", {}),
    "Calcification": ("calcification", {}),
    "Cardiomegaly": ("cardiac", {}),
    "Consolidation": ("patchy", {}),
    "ILD": ("reticular", {"coarse": False}),
    "Infiltration": ("streaky", {}),
    "Lung Opacity": ("haze", {"strength": (0.18, 0.24)}),
    "Nodule/Mass": ("disc", {"radius_range": (10, 30)}),
    "Other lesion": ("ring", {}),
    "Pleural effusion": ("meniscus", {}),
    "Pleural thickening": ("pleural_strip", {}),
    "Pneumothorax": ("pneumothorax", {}),
    "Pulmonary fibrosis": ("reticular", {"coarse": True}),
}


def paint_lesion(img, anat, rng, painter, params=None, avoid=(), max_iou=0.3, tries=8):
    """Paint one lesion into ``img`` (float32 HxW, modified in place) with ``PAINTERS[painter]``.

    ``params``: the painter's keyword arguments. ``avoid``: XYXY boxes already painted; a
    proposal overlapping any of them by IoU above ``max_iou`` is redrawn (up to ``tries``
    times). Returns the painted lesion's integer XYXY box (x1/y1 exclusive), or None if no
    non-overlapping place was found. Raises KeyError for an unknown painter name.
    """
    fn = PAINTERS[painter]
    params = params or {}
    for _ in range(tries):
        paint = fn(img, anat, rng, **params)
        if paint is None:
            continue
        if avoid and (box_iou(paint.box, avoid) > max_iou).any():
            continue
        h, w = paint.delta.shape
        img[paint.y0 : paint.y0 + h, paint.x0 : paint.x0 + w] += paint.delta
        return paint.box
    return None


def render_image(rng, size=512, lesions=(), class_painters=None, height=None, width=None):
    """Render a chest image with the given lesions.

    ``lesions``: class names (looked up in ``class_painters``, default REFLACX's) or
    ``(painter, params)`` pairs. Returns ``(img float32 HxW in [0,1], anatomy,
    [(lesion, box)])`` for the lesions that could be placed (boxes XYXY, integer pixels).
    """
    class_painters = REFLACX_CLASS_PAINTERS if class_painters is None else class_painters
    if height is None or width is None:
        height, width = random_image_size(rng, size)
    img, anat = render_background(rng, height, width)
    placed = []
    for lesion in lesions:
        painter, params = class_painters[lesion] if isinstance(lesion, str) else lesion
        box = paint_lesion(img, anat, rng, painter, params, avoid=[b for _, b in placed])
        if box is not None:
            placed.append((lesion, box))
    np.clip(img, 0.0, 1.0, out=img)
    return img, anat, placed


def to_uint8(img):
    """float [0,1] image -> uint8 (rounded)."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
