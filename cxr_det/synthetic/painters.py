"""Lesion painters outside the lung parenchyma (heart, mediastinum, hila, pleura, chest
wall, devices) and what every painter shares: :class:`Paint`, the clipped region grid and
the box of a painted lesion.

A painter is ``painter(img, anat, rng, **params) -> Paint | None``: it reads (never
modifies) the float32 image ``img`` and its :class:`~cxr_det.synthetic.anatomy.Anatomy`,
draws one lesion pattern at an anatomically plausible place with the numpy Generator
``rng``, and returns the intensity change and the lesion's true axis-aligned box, or None
when the lesion falls outside the image. Everything is vectorised numpy/cv2 on the
lesion's own region of interest. Painters of the lung parenchyma: :mod:`.lung_painters`;
the painter tables and the composition: :mod:`.render`.
"""
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from cxr_det.synthetic.anatomy import F32, ellipse_distance, lateral_sign, lung_point, random_lung, rotated_coords, smoothstep

__all__ = [
    "Paint",
    "roi_grid",
    "box_from_alpha",
    "make_paint",
    "gaussian_blobs",
    "paint_cardiac",
    "paint_meniscus",
    "paint_pneumothorax",
    "paint_hilum",
    "paint_mediastinum",
    "paint_aortic_knob",
    "paint_fracture",
    "paint_hernia",
    "paint_pleural_strip",
    "paint_device",
]


@dataclass
class Paint:
    """A lesion ready to be added to an image: ``img[y0:y0+h, x0:x0+w] += delta``."""

    x0: int
    y0: int
    delta: np.ndarray = field(repr=False)
    box: tuple  # (x0, y0, x1, y1) integer pixel box, x1/y1 exclusive


def roi_grid(anat, cx, cy, half_w, half_h):
    """Clipped region around (cx, cy): (x0, y0, x1, y1, xx, yy) with broadcastable pixel grids."""
    x0 = max(0, int(math.floor(cx - half_w)))
    y0 = max(0, int(math.floor(cy - half_h)))
    x1 = min(anat.width, int(math.ceil(cx + half_w)) + 1)
    y1 = min(anat.height, int(math.ceil(cy + half_h)) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    xx = np.arange(x0, x1, dtype=F32)[None, :]
    yy = np.arange(y0, y1, dtype=F32)[:, None]
    return x0, y0, x1, y1, xx, yy


def box_from_alpha(alpha, x0, y0, threshold):
    """Integer box (x0, y0, x1, y1) of ``alpha > threshold`` in image coordinates, or None."""
    mask = alpha > threshold
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0 or rows.size == 0:
        return None
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)


def make_paint(roi, delta, alpha, threshold):
    """The :class:`Paint` of ``delta`` (added at the corner of ``roi``) whose box is where
    ``alpha > threshold``; None if nothing is above the threshold."""
    x0, y0 = roi[0], roi[1]
    box = box_from_alpha(alpha, x0, y0, threshold)
    if box is None:
        return None
    return Paint(x0, y0, delta.astype(F32, copy=False), box)


def gaussian_blobs(rng, roi, cx, cy, count, offset, offset_unit, sigma, sigma_unit):
    """Sum of a random number of round Gaussian blobs scattered around (cx, cy) on ``roi``.

    Args:
        rng: numpy Generator; draws ``integers(*count)`` and then, per blob, the centre's x
            and y offsets and its sigma.
        roi: a :func:`roi_grid` result ``(x0, y0, x1, y1, xx, yy)``.
        cx, cy: centre of the cluster in image pixels.
        count: ``(low, high)`` of the number of blobs (``high`` exclusive).
        offset, offset_unit: each blob centre is ``c + U(-offset, offset) * offset_unit``.
        sigma, sigma_unit: each blob's sigma is ``U(*sigma) * sigma_unit`` pixels.

    Returns:
        float32 array of shape ``(y1 - y0, x1 - x0)``, each blob peaking at 1.
    """
    x0, y0, x1, y1, xx, yy = roi
    total = np.zeros((y1 - y0, x1 - x0), F32)
    for _ in range(int(rng.integers(*count))):
        bx, by = cx + rng.uniform(-offset, offset) * offset_unit, cy + rng.uniform(-offset, offset) * offset_unit
        s = rng.uniform(*sigma) * sigma_unit
        total += np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * s * s))
    return total


def paint_cardiac(img, anat, rng):
    """Enlarged cardiac silhouette: a large, bright, rounded blob over the heart."""
    s = anat.scale
    hx, hy, hrx, hry = anat.heart
    rx = min(rng.uniform(1.35, 1.6) * hrx, 95 * s)
    ry = min(rng.uniform(1.2, 1.4) * hry, 75 * s)
    cx, cy = hx + rng.uniform(0.0, 0.12) * hrx, hy + rng.uniform(-0.05, 0.1) * hry
    roi = roi_grid(anat, cx, cy, rx * 1.15, ry * 1.15)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = smoothstep((1.0 - ellipse_distance(xx, yy, cx, cy, rx, ry)) / 0.08)
    return make_paint(roi, rng.uniform(0.22, 0.28) * alpha, alpha, 0.5)


def paint_meniscus(img, anat, rng):
    """Pleural effusion: homogeneous density filling a costophrenic angle, concave-up meniscus."""
    s = anat.scale
    side, (cx, cy, rx, ry), lat = random_lung(anat, rng)
    x_lat = cx + lat * rx
    width = min(rng.uniform(60, 130) * s, 1.6 * rx)
    height = rng.uniform(45, 100) * s
    y_bot = cy + ry
    x_mid = x_lat - lat * 0.5 * width
    roi = roi_grid(anat, x_mid, y_bot - 0.5 * height, 0.5 * width + 4 * s, 0.5 * height + 6 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    t = np.clip(np.abs(xx - x_lat) / width, 0.0, 1.0)
    y_top = (y_bot - height) + height * 0.85 * t**1.6
    alpha = smoothstep((yy - y_top) / (4.0 * s)) * smoothstep((1.0 - t) / 0.1)
    alpha = alpha * np.minimum(1.0, 1.5 * anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(0.3, 0.38) * alpha, alpha, 0.3)


def paint_pneumothorax(img, anat, rng):
    """Pneumothorax: a very dark, marking-free crescent at the apex/chest wall and a thin bright pleural line."""
    s = anat.scale
    side, (cx, cy, rx, ry), lat = random_lung(anat, rng)
    d_line = rng.uniform(0.55, 0.75)
    y_low = cy + ry * rng.uniform(0.0, 0.3)
    x_med = cx - lat * 0.25 * rx
    xc = 0.5 * (x_med + cx + lat * 1.05 * rx)
    roi = roi_grid(anat, xc, 0.5 * (cy - 1.05 * ry + y_low), 0.5 * abs(cx + lat * 1.05 * rx - x_med), 0.5 * (y_low - cy + 1.05 * ry))
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = ellipse_distance(xx, yy, cx, cy, rx, ry)
    # The gap between chest wall and visceral pleura is widest at the upper lateral lung
    # and closes towards the base and the mediastinum, so the line meets the wall.
    ty = smoothstep((y_low - yy) / max(y_low - (cy - 0.3 * ry), 1.0))
    tx = smoothstep(((xx - x_med) * lat) / (0.6 * rx))
    gap = (1.0 - d_line) * ty * tx
    d_eff = 1.0 - gap
    lung = anat.lung_alpha[y0:y1, x0:x1]
    dark = smoothstep((d - d_eff) / 0.02) * lung * smoothstep(gap / 0.04)
    line = np.exp(-(((d - d_eff) * ry) / (1.2 * s)) ** 2) * smoothstep((gap - 0.02) / 0.05) * (d < 1.0)
    target = rng.uniform(0.03, 0.08)
    delta = (target - img[y0:y1, x0:x1]) * dark * 0.9 + 0.28 * line
    return make_paint(roi, delta, np.maximum(dark, line), 0.3)


def paint_hilum(img, anat, rng):
    """Enlarged hilum: a bright lobulated blob just lateral to the mediastinum."""
    s = anat.scale
    side = int(rng.integers(2))
    hx, hy = anat.hila[side]
    hx += lateral_sign(side) * rng.uniform(0, 8) * s
    spread = 18 * s
    roi = roi_grid(anat, hx, hy, spread + 30 * s, spread + 30 * s)
    if roi is None:
        return None
    total = gaussian_blobs(rng, roi, hx, hy, (3, 6), 1, spread, (7, 13), s)
    alpha = smoothstep((total - 0.35) / 0.3)
    return make_paint(roi, rng.uniform(0.26, 0.32) * alpha, alpha, 0.3)


def paint_mediastinum(img, anat, rng):
    """Abnormal (widened) mediastinal contour: the upper mediastinum bulges on both sides."""
    s = anat.scale
    cx = anat.width * 0.5
    top = min(l[1] - l[3] for l in anat.lungs) + 0.1 * anat.lungs[0][3]
    bottom = min(h[1] for h in anat.hila) + rng.uniform(-5, 15) * s
    hw_left = anat.mediastinum_halfwidth + rng.uniform(18, 40) * s
    hw_right = anat.mediastinum_halfwidth + rng.uniform(18, 40) * s
    roi = roi_grid(anat, cx + 0.5 * (hw_right - hw_left), 0.5 * (top + bottom), 0.5 * (hw_left + hw_right) + 4 * s, 0.5 * (bottom - top) + 4 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    hw = np.where(xx < cx, hw_left, hw_right)
    taper = np.sqrt(np.maximum(np.sin(np.clip((yy - top) / max(bottom - top, 1.0), 0.0, 1.0) * np.pi), 0.0))
    alpha = smoothstep((hw * (0.75 + 0.25 * taper) - np.abs(xx - cx)) / (4 * s)) * smoothstep(np.minimum(yy - top, bottom - yy) / (6 * s))
    return make_paint(roi, rng.uniform(0.2, 0.26) * alpha, alpha, 0.4)


def paint_aortic_knob(img, anat, rng):
    """Aortic enlargement: a rounded bright bulge at the upper-left mediastinal border (image right)."""
    s = anat.scale
    r = rng.uniform(18, 28) * s
    cx = anat.width * 0.5 + anat.mediastinum_halfwidth + rng.uniform(0, 10) * s
    lx, ly, lrx, lry = anat.lungs[1]
    cy = ly - lry * rng.uniform(0.35, 0.5)
    roi = roi_grid(anat, cx, cy, r + 4 * s, r + 4 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = smoothstep((r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)) / (3 * s))
    return make_paint(roi, rng.uniform(0.26, 0.32) * alpha, alpha, 0.4)


def paint_fracture(img, anat, rng):
    """Rib fracture: a short bright rib segment broken by a dark gap with a step-off."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(0.55, 0.85), b_range=(-0.6, 0.35), lateral=True)
    lat = lateral_sign(side)
    theta = math.radians(rng.uniform(15, 40)) * lat
    length, thick = rng.uniform(40, 60) * s, rng.uniform(5, 8) * s
    step, gap = rng.uniform(3, 6) * s, rng.uniform(2, 3.5) * s
    roi = roi_grid(anat, cx, cy, 0.5 * length + thick, 0.5 * length + thick)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    along, across = rotated_coords(xx, yy, cx, cy, theta)
    across = across - 0.5 * step * np.sign(along)
    rib = smoothstep((0.5 * thick - np.abs(across)) / (1.5 * s)) * smoothstep((0.5 * length - np.abs(along)) / (3 * s))
    cut = smoothstep((gap - np.abs(along)) / s)
    delta = 0.32 * rib * (1.0 - cut) - 0.15 * cut * smoothstep((thick - np.abs(across)) / (2 * s))
    return make_paint(roi, delta, rib, 0.3)


def paint_hernia(img, anat, rng):
    """Hiatal hernia: a retrocardiac round lucency with an air-fluid level and a thin bright wall."""
    s = anat.scale
    hx, hy, hrx, hry = anat.heart
    cx, cy = hx + rng.uniform(-0.25, 0.1) * hrx, hy + rng.uniform(0.2, 0.5) * hry
    r = rng.uniform(20, 34) * s
    roi = roi_grid(anat, cx, cy, r + 4 * s, r + 4 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    inside = smoothstep((r - dist) / (1.5 * s))
    air = inside * smoothstep((cy + rng.uniform(0.0, 0.35) * r - yy) / s)
    rim = np.exp(-(((dist - r) / (1.3 * s)) ** 2))
    delta = -0.6 * img[y0:y1, x0:x1] * air + 0.08 * (inside - air) + 0.22 * rim
    return make_paint(roi, delta, np.maximum(inside, rim), 0.4)


def paint_pleural_strip(img, anat, rng):
    """Pleural thickening: a bright strip running along the lateral chest wall."""
    s = anat.scale
    side, (cx, cy, rx, ry), lat = random_lung(anat, rng)
    yc = cy + rng.uniform(-0.5, 0.35) * ry
    half_h = rng.uniform(30, 65) * s
    d_in = rng.uniform(0.8, 0.86)
    roi = roi_grid(anat, cx + lat * 0.75 * rx, yc, 0.35 * rx, half_h + 4 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = ellipse_distance(xx, yy, cx, cy, rx, ry)
    alpha = (
        smoothstep((d - d_in) / 0.03)
        * np.minimum(1.0, 1.6 * anat.lung_alpha[y0:y1, x0:x1])
        * smoothstep((half_h - np.abs(yy - yc)) / (8 * s))
        * smoothstep(((xx - cx) * lat) / (4 * s))
    )
    return make_paint(roi, rng.uniform(0.28, 0.34) * alpha, alpha, 0.3)


def paint_device(img, anat, rng):
    """Support device: a thin, very bright tube running down into the mediastinum."""
    s = anat.scale
    H, W = anat.height, anat.width
    x_start = W * 0.5 + rng.uniform(-0.06, 0.06) * W
    y_end = anat.heart[1] + rng.uniform(-0.5, 0.2) * anat.heart[3]
    bend = rng.uniform(-0.05, 0.05) * W
    t = np.linspace(0.0, 1.0, 24)
    xs = x_start + bend * np.sin(np.pi * t) + (W * 0.5 - x_start) * t
    ys = t * y_end
    mask = np.zeros((H, W), np.uint8)
    pts = np.round(np.stack([xs, ys], 1)).astype(np.int32)
    cv2.polylines(mask, [pts], False, 255, thickness=max(1, int(round(3 * s))), lineType=cv2.LINE_AA)
    box = box_from_alpha(mask, 0, 0, 64)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    alpha = mask[y0:y1, x0:x1].astype(F32) / 255.0
    return Paint(x0, y0, 0.4 * alpha, box)
