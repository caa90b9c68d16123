"""Lesion painters of the lung parenchyma: opacities (band, patchy, haze, streaks),
round lesions (disc, ring, calcified dots), lucencies (bullae) and interstitial meshes.

Each is a painter as described in :mod:`.painters` (``painter(img, anat, rng, **params)
-> Paint | None``), placing its lesion at a random point inside one lung.
"""
import math

import numpy as np

from cxr_det.synthetic.anatomy import F32, ellipse_distance, lateral_sign, lung_point, rotated_coords, smooth_noise, smoothstep
from cxr_det.synthetic.painters import gaussian_blobs, make_paint, roi_grid

__all__ = [
    "paint_band",
    "paint_patchy",
    "paint_disc",
    "paint_haze",
    "paint_bullae",
    "paint_reticular",
    "paint_calcification",
    "paint_streaky",
    "paint_ring",
]


def paint_band(img, anat, rng):
    """Atelectasis: a thin, dense, near-horizontal linear band in the mid/lower lung."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(0.0, 0.55))
    rx = anat.lungs[side][2]
    length = min(rng.uniform(70, 140) * s, 1.5 * rx)
    thick = rng.uniform(12, 22) * s
    theta = math.radians(rng.uniform(-35, 35))
    half = 0.5 * length + thick
    roi = roi_grid(anat, cx, cy, half, half)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    along, across = rotated_coords(xx, yy, cx, cy, theta)
    alpha = smoothstep((0.5 * thick - np.abs(across)) / (0.3 * thick)) * smoothstep((0.5 * length - np.abs(along)) / (0.12 * length))
    return make_paint(roi, rng.uniform(0.28, 0.36) * alpha, alpha, 0.3)


def paint_patchy(img, anat, rng):
    """Air-space opacity: a patchy, textured, ill-defined density anywhere in a lung.

    Consolidation and pulmonary edema are both drawn by this painter with this one
    parameter distribution, so the image alone cannot tell them apart.
    """
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.45, 0.6))
    radius = rng.uniform(30, 75) * s
    roi = roi_grid(anat, cx, cy, 1.5 * radius, 1.5 * radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    total = gaussian_blobs(rng, roi, cx, cy, (4, 8), 0.55, radius, (0.28, 0.45), radius)
    envelope = smoothstep((total - 0.25) / 0.6)
    texture = 0.55 + 0.45 * np.clip(0.5 + 0.35 * smooth_noise(rng, y1 - y0, x1 - x0, 7 * s), 0.0, 1.0)
    alpha = envelope * texture * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(0.27, 0.34) * alpha, alpha, 0.25)


def paint_disc(img, anat, rng, radius_range=(12, 30)):
    """Lung nodule or mass: a small bright round disc with a sharp edge."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.5, 0.6), b_range=(-0.6, 0.5), lateral=True)
    r = rng.uniform(*radius_range) * s
    roi = roi_grid(anat, cx, cy, r + 3 * s, r + 3 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    alpha = smoothstep((r - dist) / (1.5 * s))
    delta = rng.uniform(0.3, 0.4) * alpha * (0.85 + 0.15 * np.clip(1.0 - dist / r, 0.0, 1.0))
    return make_paint(roi, delta, alpha, 0.5)


def paint_haze(img, anat, rng, strength=(0.10, 0.15)):
    """Ground-glass / lung opacity: a smooth, homogeneous, soft-edged haze (no texture)."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.45, 0.45), b_range=(-0.5, 0.5))
    rx, ry = rng.uniform(35, 75) * s, rng.uniform(35, 75) * s
    roi = roi_grid(anat, cx, cy, 1.2 * max(rx, ry), 1.2 * max(rx, ry))
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = ellipse_distance(xx, yy, cx, cy, rx, ry, rng.uniform(0, np.pi))
    alpha = smoothstep((1.0 - d) / 0.45) * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(*strength) * alpha, alpha, 0.3)


def paint_bullae(img, anat, rng):
    """Emphysema: a hyperlucent lung region containing thin-walled dark bullae."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(-0.55, 0.15))
    radius = rng.uniform(45, 80) * s
    roi = roi_grid(anat, cx, cy, radius * 1.1, radius * 1.1)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    patch = img[y0:y1, x0:x1]
    env = smoothstep((1.0 - ellipse_distance(xx, yy, cx, cy, radius, radius * rng.uniform(0.8, 1.2))) / 0.25)
    env = env * np.minimum(1.0, 1.5 * anat.lung_alpha[y0:y1, x0:x1])
    delta = -0.45 * patch * env
    for _ in range(int(rng.integers(2, 5))):
        br = rng.uniform(10, 22) * s
        bx, by = cx + rng.uniform(-0.5, 0.5) * radius, cy + rng.uniform(-0.5, 0.5) * radius
        dist = np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)
        delta = delta - 0.25 * patch * smoothstep((br - dist) / (1.5 * s)) * env + 0.18 * np.exp(-(((dist - br) / (1.2 * s)) ** 2)) * env
    return make_paint(roi, delta, env, 0.3)


def paint_reticular(img, anat, rng, coarse=False):
    """Interstitial pattern: a fine reticular mesh in the lower zones (``coarse``: fibrotic upper-zone strands)."""
    s = anat.scale
    if coarse:
        side, cx, cy = lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(-0.7, -0.25))
        spacing = rng.uniform(12, 18) * s
    else:
        side, cx, cy = lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(0.05, 0.6))
        spacing = rng.uniform(6, 9) * s
    radius = rng.uniform(40, 75) * s
    roi = roi_grid(anat, cx, cy, 1.1 * radius, 1.1 * radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    h, w = y1 - y0, x1 - x0
    theta = rng.uniform(0, np.pi)
    along, across = rotated_coords(xx, yy, cx, cy, theta)
    p = along + 0.4 * spacing * smooth_noise(rng, h, w, 3 * spacing)
    q = across + 0.4 * spacing * smooth_noise(rng, h, w, 3 * spacing)
    lines_p = np.clip((np.abs(np.cos(np.pi * p / spacing)) - 0.72) / 0.28, 0.0, 1.0)
    lines_q = np.clip((np.abs(np.cos(np.pi * q / spacing)) - 0.72) / 0.28, 0.0, 1.0)
    mesh = np.maximum(lines_p, (0.35 if coarse else 1.0) * lines_q)
    env = smoothstep((1.0 - ellipse_distance(xx, yy, cx, cy, radius, radius * rng.uniform(0.8, 1.2))) / 0.3)
    env = env * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    delta = (0.25 * mesh + 0.05) * env
    return make_paint(roi, delta, env, 0.3)


def paint_calcification(img, anat, rng):
    """Calcification: a tight cluster of tiny, very bright dots."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.5, 0.5))
    spread = rng.uniform(8, 14) * s
    roi = roi_grid(anat, cx, cy, spread + 8 * s, spread + 8 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = np.zeros(np.broadcast_shapes(xx.shape, yy.shape), F32)
    for _ in range(int(rng.integers(3, 8))):
        r = rng.uniform(2.0, 4.0) * s
        bx, by = cx + rng.uniform(-1, 1) * spread, cy + rng.uniform(-1, 1) * spread
        np.maximum(alpha, smoothstep((r - np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)) / s), out=alpha)
    paint = make_paint(roi, rng.uniform(0.45, 0.55) * alpha, alpha, 0.3)
    if paint is not None:  # pad the tight box a little, as annotators do
        pad = int(round(3 * s))
        b = paint.box
        paint.box = (max(0, b[0] - pad), max(0, b[1] - pad), min(anat.width, b[2] + pad), min(anat.height, b[3] + pad))
    return paint


def paint_streaky(img, anat, rng):
    """Infiltration: a few fuzzy streaks radiating outwards from the hilum."""
    s = anat.scale
    side = int(rng.integers(2))
    hx, hy = anat.hila[side]
    lat = lateral_sign(side)
    cx = hx + lat * rng.uniform(35, 60) * s
    cy = hy + rng.uniform(-40, 50) * s
    radius = 60 * s
    roi = roi_grid(anat, cx, cy, radius, radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    base = math.atan2(cy - hy, cx - hx)
    alpha = np.zeros((y1 - y0, x1 - x0), F32)
    for _ in range(int(rng.integers(4, 8))):
        sx, sy = cx + rng.uniform(-20, 20) * s, cy + rng.uniform(-25, 25) * s
        ang = base + math.radians(rng.uniform(-25, 25))
        length, sigma = rng.uniform(45, 90) * s, rng.uniform(3.0, 5.0) * s
        along, across = rotated_coords(xx, yy, sx, sy, ang)
        streak = np.exp(-0.5 * (across / sigma) ** 2) * smoothstep((0.5 * length - np.abs(along)) / (0.2 * length))
        np.maximum(alpha, streak, out=alpha)
    alpha *= 0.7 + 0.3 * np.clip(0.5 + 0.4 * smooth_noise(rng, y1 - y0, x1 - x0, 5 * s), 0.0, 1.0)
    return make_paint(roi, rng.uniform(0.24, 0.3) * alpha, alpha, 0.3)


def paint_ring(img, anat, rng):
    """Other lesion: a thick-walled bright ring with a dark centre (cavity-like)."""
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.6, 0.4))
    r, wall = rng.uniform(14, 28) * s, rng.uniform(4, 7) * s
    roi = roi_grid(anat, cx, cy, r + 3 * s, r + 3 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    ring = smoothstep((0.5 * wall - np.abs(dist - (r - 0.5 * wall))) / (1.2 * s))
    hole = smoothstep((r - wall - dist) / (1.5 * s))
    delta = 0.32 * ring - 0.3 * img[y0:y1, x0:x1] * hole
    return make_paint(roi, delta, np.maximum(ring, hole), 0.3)
