"""Chest-like synthetic radiographs and one lesion painter per visual pattern.

Images are float32 arrays in [0, 1] where 1 is dense (bright, as displayed). The
background has body soft tissue, two dark lung fields whose lower borders form the
diaphragm domes, a bright mediastinum and spine, a heart shadow, clavicles, faint ribs
and noise. Each painter draws one lesion pattern at an anatomically plausible place and
reports the lesion's true axis-aligned box, so detectors trained on the synthetic
datasets have something real (if simple) to learn.

Everything is vectorised numpy/cv2 on the lesion's own region of interest; sizes are
specified for a ~512 px image and scaled with the image.
"""
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "Anatomy",
    "Paint",
    "PAINTERS",
    "REFLACX_CLASS_PAINTERS",
    "VINDR_CLASS_PAINTERS",
    "random_image_size",
    "render_background",
    "paint_lesion",
    "render_image",
    "to_uint8",
]

F32 = np.float32


@dataclass
class Anatomy:
    """Where the synthetic anatomy of one image lies, in pixels (x right, y down).

    ``lungs[0]`` is the lung on the image's left (the patient's right on a PA film).
    Each ellipse is ``(cx, cy, rx, ry)``.
    """

    height: int
    width: int
    scale: float
    lungs: tuple
    heart: tuple
    mediastinum_halfwidth: float
    hila: tuple
    thorax_box: tuple
    lung_alpha: np.ndarray = field(repr=False)


@dataclass
class Paint:
    """A lesion ready to be added to an image: ``img[y0:y0+h, x0:x0+w] += delta``."""

    x0: int
    y0: int
    delta: np.ndarray = field(repr=False)
    box: tuple  # (x0, y0, x1, y1) integer pixel box, x1/y1 exclusive


# --------------------------------------------------------------------------- helpers


def _smoothstep(t):
    """0 below 0, 1 above 1, smooth in between (array in, float32 array out)."""
    t = np.clip(t, 0.0, 1.0).astype(F32, copy=False)
    return t * t * (3.0 - 2.0 * t)


def _smooth_noise(rng, h, w, cell):
    """Band-limited noise of unit std on an h x w grid with features about ``cell`` px wide."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    small = rng.standard_normal((gh, gw), dtype=F32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(big.std())
    return big / std if std > 1e-6 else big


def _roi(anat, cx, cy, half_w, half_h):
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


def _ellipse_d(xx, yy, cx, cy, rx, ry, angle=0.0):
    """Normalised elliptic radius (1 on the ellipse border), optionally rotated by ``angle`` rad."""
    dx, dy = xx - cx, yy - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)


def _box_from_alpha(alpha, x0, y0, threshold):
    """Integer box (x0, y0, x1, y1) of ``alpha > threshold`` in image coordinates, or None."""
    mask = alpha > threshold
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0 or rows.size == 0:
        return None
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)


def _lung_point(anat, rng, side=None, a_range=(-0.55, 0.55), b_range=(-0.6, 0.6), lateral=False):
    """A random point inside a lung: side (0/1) and (x, y). ``a``/``b`` are ellipse units.

    With ``lateral`` the horizontal unit ``a`` is measured towards the chest wall, so
    positive values are lateral on both sides.
    """
    side = int(rng.integers(2)) if side is None else side
    cx, cy, rx, ry = anat.lungs[side]
    for _ in range(20):
        a = rng.uniform(*a_range)
        b = rng.uniform(*b_range)
        if a * a + b * b < 0.8:
            break
    if lateral:
        a = -a if side == 0 else a
    return side, cx + a * rx, cy + b * ry


def _lateral_sign(side):
    """+1 if the chest wall of lung ``side`` is towards larger x, else -1."""
    return -1.0 if side == 0 else 1.0


def _finish(anat, roi, delta, alpha, threshold):
    x0, y0 = roi[0], roi[1]
    box = _box_from_alpha(alpha, x0, y0, threshold)
    if box is None:
        return None
    return Paint(x0, y0, delta.astype(F32, copy=False), box)


# --------------------------------------------------------------------------- background


def random_image_size(rng, size=512):
    """(height, width) around ``size``: portrait, landscape or square, each side 0.85-1.15 x size."""
    kind = rng.choice(3, p=[0.45, 0.25, 0.30])
    if kind == 0:  # portrait (taller than wide), the commonest CXR shape
        h, w = size * rng.uniform(1.0, 1.15), size * rng.uniform(0.85, 1.0)
    elif kind == 1:  # landscape
        h, w = size * rng.uniform(0.85, 1.0), size * rng.uniform(1.0, 1.15)
    else:
        h = w = size * rng.uniform(0.9, 1.1)
    return int(round(h)), int(round(w))


def render_background(rng, height, width):
    """A lesion-free chest-like radiograph (float32 HxW in [0, 1]) and its :class:`Anatomy`."""
    H, W = int(height), int(width)
    scale = math.sqrt(H * W) / 512.0
    u = (np.arange(W, dtype=F32) + 0.5)[None, :] / W
    v = (np.arange(H, dtype=F32) + 0.5)[:, None] / H

    # Body outline: soft tissue inside, air outside.
    body_d = _ellipse_d(u, v, 0.5 + rng.normal(0, 0.01), 0.6, rng.uniform(0.45, 0.52), 0.66)
    body = _smoothstep((1.0 - body_d) / 0.07)

    # Lungs: two ellipses; their rounded lower borders are the diaphragm domes.
    sep = rng.uniform(0.19, 0.225)
    lung_cy = rng.uniform(0.43, 0.49)
    lung_rx = rng.uniform(0.155, 0.175)
    lung_ry = rng.uniform(0.27, 0.31)
    lungs_n = (
        (0.5 - sep + rng.normal(0, 0.006), lung_cy, lung_rx, lung_ry),
        (0.5 + sep + rng.normal(0, 0.006), lung_cy + rng.uniform(0.0, 0.02), lung_rx * rng.uniform(0.92, 1.0), lung_ry * rng.uniform(0.95, 1.02)),
    )
    lung_alpha = np.zeros((H, W), F32)
    for cx, cy, rx, ry in lungs_n:
        d = _ellipse_d(u, v, cx, cy, rx, ry)
        np.maximum(lung_alpha, _smoothstep((1.0 - d) / 0.12), out=lung_alpha)

    # Heart shadow, lower middle, bulging towards the image right (patient's left).
    heart_n = (0.5 + rng.uniform(0.03, 0.06), lung_cy + lung_ry * rng.uniform(0.5, 0.6), rng.uniform(0.12, 0.145), rng.uniform(0.09, 0.11))
    heart = _smoothstep((1.0 - _ellipse_d(u, v, *heart_n)) / 0.15)

    # Mediastinum (widening downwards) and spine with vertebral modulation.
    med_hw = 0.055 + 0.03 * v
    mediastinum = _smoothstep((med_hw - np.abs(u - 0.5)) / 0.02) * _smoothstep((v - 0.05) / 0.1)
    spine = _smoothstep((0.028 - np.abs(u - 0.5)) / 0.01) * (0.85 + 0.15 * np.cos(2 * np.pi * v * rng.uniform(11, 15)))

    # Ribs: curved bright bands inside the lungs; clavicles: two oblique bands at the top.
    n_ribs = rng.uniform(9.0, 11.0)
    rib_phase = (v - rng.uniform(0.7, 1.0) * (u - 0.5) ** 2) * n_ribs + rng.uniform(0, 1)
    ribs = np.clip((np.cos(2 * np.pi * rib_phase) - 0.55) / 0.45, 0.0, 1.0)
    clav_y = rng.uniform(0.13, 0.17)
    clav = _smoothstep((0.012 - np.abs(v - clav_y - 0.25 * np.abs(u - 0.5) + 0.02)) / 0.008) * _smoothstep((0.36 - np.abs(u - 0.5)) / 0.05)

    img = np.full((H, W), 0.06, F32)
    img += 0.42 * body
    img -= 0.26 * lung_alpha * (1.0 - 0.6 * heart) * (1.0 - 0.6 * mediastinum) * (0.8 + 0.2 * (1.0 - v))
    img += 0.20 * mediastinum
    img += 0.10 * spine
    img += 0.12 * heart
    img += 0.06 * ribs * lung_alpha
    img += 0.10 * clav
    # Lung markings, broad density variation and quantum noise.
    img += 0.025 * lung_alpha * _smooth_noise(rng, H, W, 10 * scale)
    img += 0.03 * _smooth_noise(rng, H, W, 90 * scale)
    img += rng.normal(0.0, 0.012, size=(H, W)).astype(F32)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    img = (img - 0.4) * contrast + 0.4 + brightness
    np.clip(img, 0.0, 1.0, out=img)

    to_px = lambda e: (e[0] * W, e[1] * H, e[2] * W, e[3] * H)  # noqa: E731
    lungs = tuple(to_px(e) for e in lungs_n)
    hila = tuple(
        ((0.5 + s * rng.uniform(0.085, 0.105)) * W, (lung_cy + rng.uniform(-0.01, 0.04)) * H) for s in (-1, 1)
    )
    x_lo = min(l[0] - l[2] for l in lungs)
    x_hi = max(l[0] + l[2] for l in lungs)
    y_lo = min(l[1] - l[3] for l in lungs)
    y_hi = max(l[1] + l[3] for l in lungs)
    anat = Anatomy(
        height=H,
        width=W,
        scale=scale,
        lungs=lungs,
        heart=to_px(heart_n),
        mediastinum_halfwidth=0.07 * W,
        hila=hila,
        thorax_box=(max(0.0, x_lo - 0.03 * W), max(0.0, y_lo - 0.03 * H), min(W - 1.0, x_hi + 0.03 * W), min(H - 1.0, y_hi + 0.04 * H)),
        lung_alpha=lung_alpha,
    )
    return img, anat


# --------------------------------------------------------------------------- painters
# Each painter(img, anat, rng, **params) -> Paint | None reads but never modifies img.


def paint_cardiac(img, anat, rng):
    """Enlarged cardiac silhouette: a large, bright, rounded blob over the heart."""
    s = anat.scale
    hx, hy, hrx, hry = anat.heart
    rx = min(rng.uniform(1.35, 1.6) * hrx, 95 * s)
    ry = min(rng.uniform(1.2, 1.4) * hry, 75 * s)
    cx, cy = hx + rng.uniform(0.0, 0.12) * hrx, hy + rng.uniform(-0.05, 0.1) * hry
    roi = _roi(anat, cx, cy, rx * 1.15, ry * 1.15)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = _smoothstep((1.0 - _ellipse_d(xx, yy, cx, cy, rx, ry)) / 0.08)
    return _finish(anat, roi, rng.uniform(0.22, 0.28) * alpha, alpha, 0.5)


def paint_band(img, anat, rng):
    """Atelectasis: a thin, dense, near-horizontal linear band in the mid/lower lung."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(0.0, 0.55))
    rx = anat.lungs[side][2]
    length = min(rng.uniform(70, 140) * s, 1.5 * rx)
    thick = rng.uniform(12, 22) * s
    theta = math.radians(rng.uniform(-35, 35))
    half = 0.5 * length + thick
    roi = _roi(anat, cx, cy, half, half)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    c, sn = math.cos(theta), math.sin(theta)
    along = (xx - cx) * c + (yy - cy) * sn
    across = -(xx - cx) * sn + (yy - cy) * c
    alpha = _smoothstep((0.5 * thick - np.abs(across)) / (0.3 * thick)) * _smoothstep((0.5 * length - np.abs(along)) / (0.12 * length))
    return _finish(anat, roi, rng.uniform(0.28, 0.36) * alpha, alpha, 0.3)


def paint_meniscus(img, anat, rng):
    """Pleural effusion: homogeneous density filling a costophrenic angle, concave-up meniscus."""
    s = anat.scale
    side = int(rng.integers(2))
    cx, cy, rx, ry = anat.lungs[side]
    lat = _lateral_sign(side)
    x_lat = cx + lat * rx
    width = min(rng.uniform(60, 130) * s, 1.6 * rx)
    height = rng.uniform(45, 100) * s
    y_bot = cy + ry
    x_mid = x_lat - lat * 0.5 * width
    roi = _roi(anat, x_mid, y_bot - 0.5 * height, 0.5 * width + 4 * s, 0.5 * height + 6 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    t = np.clip(np.abs(xx - x_lat) / width, 0.0, 1.0)
    y_top = (y_bot - height) + height * 0.85 * t**1.6
    alpha = _smoothstep((yy - y_top) / (4.0 * s)) * _smoothstep((1.0 - t) / 0.1)
    alpha = alpha * np.minimum(1.0, 1.5 * anat.lung_alpha[y0:y1, x0:x1])
    return _finish(anat, roi, rng.uniform(0.3, 0.38) * alpha, alpha, 0.3)


def paint_patchy(img, anat, rng):
    """Air-space opacity: a patchy, textured, ill-defined density anywhere in a lung.

    Consolidation and pulmonary edema are both drawn by this painter with this one
    parameter distribution, so the image alone cannot tell them apart.
    """
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.45, 0.6))
    radius = rng.uniform(30, 75) * s
    roi = _roi(anat, cx, cy, 1.5 * radius, 1.5 * radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    total = np.zeros((y1 - y0, x1 - x0), F32)
    for _ in range(int(rng.integers(4, 8))):
        bx, by = cx + rng.uniform(-0.55, 0.55) * radius, cy + rng.uniform(-0.55, 0.55) * radius
        sigma = rng.uniform(0.28, 0.45) * radius
        total += np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma * sigma))
    envelope = _smoothstep((total - 0.25) / 0.6)
    texture = 0.55 + 0.45 * np.clip(0.5 + 0.35 * _smooth_noise(rng, y1 - y0, x1 - x0, 7 * s), 0.0, 1.0)
    alpha = envelope * texture * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return _finish(anat, roi, rng.uniform(0.27, 0.34) * alpha, alpha, 0.25)


def paint_disc(img, anat, rng, radius_range=(12, 30)):
    """Lung nodule or mass: a small bright round disc with a sharp edge."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.5, 0.6), b_range=(-0.6, 0.5), lateral=True)
    r = rng.uniform(*radius_range) * s
    roi = _roi(anat, cx, cy, r + 3 * s, r + 3 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    alpha = _smoothstep((r - dist) / (1.5 * s))
    delta = rng.uniform(0.3, 0.4) * alpha * (0.85 + 0.15 * np.clip(1.0 - dist / r, 0.0, 1.0))
    return _finish(anat, roi, delta, alpha, 0.5)


def paint_pneumothorax(img, anat, rng):
    """Pneumothorax: a very dark, marking-free crescent at the apex/chest wall and a thin bright pleural line."""
    s = anat.scale
    side = int(rng.integers(2))
    cx, cy, rx, ry = anat.lungs[side]
    lat = _lateral_sign(side)
    d_line = rng.uniform(0.55, 0.75)
    y_low = cy + ry * rng.uniform(0.0, 0.3)
    x_med = cx - lat * 0.25 * rx
    xc = 0.5 * (x_med + cx + lat * 1.05 * rx)
    roi = _roi(anat, xc, 0.5 * (cy - 1.05 * ry + y_low), 0.5 * abs(cx + lat * 1.05 * rx - x_med), 0.5 * (y_low - cy + 1.05 * ry))
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = _ellipse_d(xx, yy, cx, cy, rx, ry)
    # The gap between chest wall and visceral pleura is widest at the upper lateral lung
    # and closes towards the base and the mediastinum, so the line meets the wall.
    ty = _smoothstep((y_low - yy) / max(y_low - (cy - 0.3 * ry), 1.0))
    tx = _smoothstep(((xx - x_med) * lat) / (0.6 * rx))
    gap = (1.0 - d_line) * ty * tx
    d_eff = 1.0 - gap
    lung = anat.lung_alpha[y0:y1, x0:x1]
    dark = _smoothstep((d - d_eff) / 0.02) * lung * _smoothstep(gap / 0.04)
    line = np.exp(-(((d - d_eff) * ry) / (1.2 * s)) ** 2) * _smoothstep((gap - 0.02) / 0.05) * (d < 1.0)
    target = rng.uniform(0.03, 0.08)
    delta = (target - img[y0:y1, x0:x1]) * dark * 0.9 + 0.28 * line
    return _finish(anat, roi, delta, np.maximum(dark, line), 0.3)


def paint_hilum(img, anat, rng):
    """Enlarged hilum: a bright lobulated blob just lateral to the mediastinum."""
    s = anat.scale
    side = int(rng.integers(2))
    hx, hy = anat.hila[side]
    hx += _lateral_sign(side) * rng.uniform(0, 8) * s
    spread = 18 * s
    roi = _roi(anat, hx, hy, spread + 30 * s, spread + 30 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    total = np.zeros((y1 - y0, x1 - x0), F32)
    for _ in range(int(rng.integers(3, 6))):
        bx, by = hx + rng.uniform(-1, 1) * spread, hy + rng.uniform(-1, 1) * spread
        sigma = rng.uniform(7, 13) * s
        total += np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma * sigma))
    alpha = _smoothstep((total - 0.35) / 0.3)
    return _finish(anat, roi, rng.uniform(0.26, 0.32) * alpha, alpha, 0.3)


def paint_mediastinum(img, anat, rng):
    """Abnormal (widened) mediastinal contour: the upper mediastinum bulges on both sides."""
    s = anat.scale
    cx = anat.width * 0.5
    top = min(l[1] - l[3] for l in anat.lungs) + 0.1 * anat.lungs[0][3]
    bottom = min(h[1] for h in anat.hila) + rng.uniform(-5, 15) * s
    hw_left = anat.mediastinum_halfwidth + rng.uniform(18, 40) * s
    hw_right = anat.mediastinum_halfwidth + rng.uniform(18, 40) * s
    roi = _roi(anat, cx + 0.5 * (hw_right - hw_left), 0.5 * (top + bottom), 0.5 * (hw_left + hw_right) + 4 * s, 0.5 * (bottom - top) + 4 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    hw = np.where(xx < cx, hw_left, hw_right)
    taper = np.sqrt(np.maximum(np.sin(np.clip((yy - top) / max(bottom - top, 1.0), 0.0, 1.0) * np.pi), 0.0))
    alpha = _smoothstep((hw * (0.75 + 0.25 * taper) - np.abs(xx - cx)) / (4 * s)) * _smoothstep(np.minimum(yy - top, bottom - yy) / (6 * s))
    return _finish(anat, roi, rng.uniform(0.2, 0.26) * alpha, alpha, 0.4)


def paint_aortic_knob(img, anat, rng):
    """Aortic enlargement: a rounded bright bulge at the upper-left mediastinal border (image right)."""
    s = anat.scale
    r = rng.uniform(18, 28) * s
    cx = anat.width * 0.5 + anat.mediastinum_halfwidth + rng.uniform(0, 10) * s
    lx, ly, lrx, lry = anat.lungs[1]
    cy = ly - lry * rng.uniform(0.35, 0.5)
    roi = _roi(anat, cx, cy, r + 4 * s, r + 4 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = _smoothstep((r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)) / (3 * s))
    return _finish(anat, roi, rng.uniform(0.26, 0.32) * alpha, alpha, 0.4)


def paint_fracture(img, anat, rng):
    """Rib fracture: a short bright rib segment broken by a dark gap with a step-off."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(0.55, 0.85), b_range=(-0.6, 0.35), lateral=True)
    lat = _lateral_sign(side)
    theta = math.radians(rng.uniform(15, 40)) * lat
    length, thick = rng.uniform(40, 60) * s, rng.uniform(5, 8) * s
    step, gap = rng.uniform(3, 6) * s, rng.uniform(2, 3.5) * s
    roi = _roi(anat, cx, cy, 0.5 * length + thick, 0.5 * length + thick)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    c, sn = math.cos(theta), math.sin(theta)
    along = (xx - cx) * c + (yy - cy) * sn
    across = -(xx - cx) * sn + (yy - cy) * c - 0.5 * step * np.sign(along)
    rib = _smoothstep((0.5 * thick - np.abs(across)) / (1.5 * s)) * _smoothstep((0.5 * length - np.abs(along)) / (3 * s))
    cut = _smoothstep((gap - np.abs(along)) / s)
    delta = 0.32 * rib * (1.0 - cut) - 0.15 * cut * _smoothstep((thick - np.abs(across)) / (2 * s))
    return _finish(anat, roi, delta, rib, 0.3)


def paint_haze(img, anat, rng, strength=(0.10, 0.15)):
    """Ground-glass / lung opacity: a smooth, homogeneous, soft-edged haze (no texture)."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.45, 0.45), b_range=(-0.5, 0.5))
    rx, ry = rng.uniform(35, 75) * s, rng.uniform(35, 75) * s
    roi = _roi(anat, cx, cy, 1.2 * max(rx, ry), 1.2 * max(rx, ry))
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = _ellipse_d(xx, yy, cx, cy, rx, ry, rng.uniform(0, np.pi))
    alpha = _smoothstep((1.0 - d) / 0.45) * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return _finish(anat, roi, rng.uniform(*strength) * alpha, alpha, 0.3)


def paint_hernia(img, anat, rng):
    """Hiatal hernia: a retrocardiac round lucency with an air-fluid level and a thin bright wall."""
    s = anat.scale
    hx, hy, hrx, hry = anat.heart
    cx, cy = hx + rng.uniform(-0.25, 0.1) * hrx, hy + rng.uniform(0.2, 0.5) * hry
    r = rng.uniform(20, 34) * s
    roi = _roi(anat, cx, cy, r + 4 * s, r + 4 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    inside = _smoothstep((r - dist) / (1.5 * s))
    air = inside * _smoothstep((cy + rng.uniform(0.0, 0.35) * r - yy) / s)
    rim = np.exp(-(((dist - r) / (1.3 * s)) ** 2))
    delta = -0.6 * img[y0:y1, x0:x1] * air + 0.08 * (inside - air) + 0.22 * rim
    return _finish(anat, roi, delta, np.maximum(inside, rim), 0.4)


def paint_bullae(img, anat, rng):
    """Emphysema: a hyperlucent lung region containing thin-walled dark bullae."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(-0.55, 0.15))
    radius = rng.uniform(45, 80) * s
    roi = _roi(anat, cx, cy, radius * 1.1, radius * 1.1)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    patch = img[y0:y1, x0:x1]
    env = _smoothstep((1.0 - _ellipse_d(xx, yy, cx, cy, radius, radius * rng.uniform(0.8, 1.2))) / 0.25)
    env = env * np.minimum(1.0, 1.5 * anat.lung_alpha[y0:y1, x0:x1])
    delta = -0.45 * patch * env
    for _ in range(int(rng.integers(2, 5))):
        br = rng.uniform(10, 22) * s
        bx, by = cx + rng.uniform(-0.5, 0.5) * radius, cy + rng.uniform(-0.5, 0.5) * radius
        dist = np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)
        delta = delta - 0.25 * patch * _smoothstep((br - dist) / (1.5 * s)) * env + 0.18 * np.exp(-(((dist - br) / (1.2 * s)) ** 2)) * env
    return _finish(anat, roi, delta, env, 0.3)


def paint_reticular(img, anat, rng, coarse=False):
    """Interstitial pattern: a fine reticular mesh in the lower zones (``coarse``: fibrotic upper-zone strands)."""
    s = anat.scale
    if coarse:
        side, cx, cy = _lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(-0.7, -0.25))
        spacing = rng.uniform(12, 18) * s
    else:
        side, cx, cy = _lung_point(anat, rng, a_range=(-0.35, 0.35), b_range=(0.05, 0.6))
        spacing = rng.uniform(6, 9) * s
    radius = rng.uniform(40, 75) * s
    roi = _roi(anat, cx, cy, 1.1 * radius, 1.1 * radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    h, w = y1 - y0, x1 - x0
    theta = rng.uniform(0, np.pi)
    c, sn = math.cos(theta), math.sin(theta)
    p = (xx - cx) * c + (yy - cy) * sn + 0.4 * spacing * _smooth_noise(rng, h, w, 3 * spacing)
    q = -(xx - cx) * sn + (yy - cy) * c + 0.4 * spacing * _smooth_noise(rng, h, w, 3 * spacing)
    lines_p = np.clip((np.abs(np.cos(np.pi * p / spacing)) - 0.72) / 0.28, 0.0, 1.0)
    lines_q = np.clip((np.abs(np.cos(np.pi * q / spacing)) - 0.72) / 0.28, 0.0, 1.0)
    mesh = np.maximum(lines_p, (0.35 if coarse else 1.0) * lines_q)
    env = _smoothstep((1.0 - _ellipse_d(xx, yy, cx, cy, radius, radius * rng.uniform(0.8, 1.2))) / 0.3)
    env = env * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    delta = (0.25 * mesh + 0.05) * env
    return _finish(anat, roi, delta, env, 0.3)


def paint_calcification(img, anat, rng):
    """Calcification: a tight cluster of tiny, very bright dots."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.5, 0.5))
    spread = rng.uniform(8, 14) * s
    roi = _roi(anat, cx, cy, spread + 8 * s, spread + 8 * s)
    if roi is None:
        return None
    xx, yy = roi[4], roi[5]
    alpha = np.zeros(np.broadcast_shapes(xx.shape, yy.shape), F32)
    for _ in range(int(rng.integers(3, 8))):
        r = rng.uniform(2.0, 4.0) * s
        bx, by = cx + rng.uniform(-1, 1) * spread, cy + rng.uniform(-1, 1) * spread
        np.maximum(alpha, _smoothstep((r - np.sqrt((xx - bx) ** 2 + (yy - by) ** 2)) / s), out=alpha)
    paint = _finish(anat, roi, rng.uniform(0.45, 0.55) * alpha, alpha, 0.3)
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
    lat = _lateral_sign(side)
    cx = hx + lat * rng.uniform(35, 60) * s
    cy = hy + rng.uniform(-40, 50) * s
    radius = 60 * s
    roi = _roi(anat, cx, cy, radius, radius)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    base = math.atan2(cy - hy, cx - hx)
    alpha = np.zeros((y1 - y0, x1 - x0), F32)
    for _ in range(int(rng.integers(4, 8))):
        sx, sy = cx + rng.uniform(-20, 20) * s, cy + rng.uniform(-25, 25) * s
        ang = base + math.radians(rng.uniform(-25, 25))
        length, sigma = rng.uniform(45, 90) * s, rng.uniform(3.0, 5.0) * s
        c, sn = math.cos(ang), math.sin(ang)
        along = (xx - sx) * c + (yy - sy) * sn
        across = -(xx - sx) * sn + (yy - sy) * c
        streak = np.exp(-0.5 * (across / sigma) ** 2) * _smoothstep((0.5 * length - np.abs(along)) / (0.2 * length))
        np.maximum(alpha, streak, out=alpha)
    alpha *= 0.7 + 0.3 * np.clip(0.5 + 0.4 * _smooth_noise(rng, y1 - y0, x1 - x0, 5 * s), 0.0, 1.0)
    return _finish(anat, roi, rng.uniform(0.24, 0.3) * alpha, alpha, 0.3)


def paint_ring(img, anat, rng):
    """Other lesion: a thick-walled bright ring with a dark centre (cavity-like)."""
    s = anat.scale
    side, cx, cy = _lung_point(anat, rng, a_range=(-0.5, 0.5), b_range=(-0.6, 0.4))
    r, wall = rng.uniform(14, 28) * s, rng.uniform(4, 7) * s
    roi = _roi(anat, cx, cy, r + 3 * s, r + 3 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    ring = _smoothstep((0.5 * wall - np.abs(dist - (r - 0.5 * wall))) / (1.2 * s))
    hole = _smoothstep((r - wall - dist) / (1.5 * s))
    delta = 0.32 * ring - 0.3 * img[y0:y1, x0:x1] * hole
    return _finish(anat, roi, delta, np.maximum(ring, hole), 0.3)


def paint_pleural_strip(img, anat, rng):
    """Pleural thickening: a bright strip running along the lateral chest wall."""
    s = anat.scale
    side = int(rng.integers(2))
    cx, cy, rx, ry = anat.lungs[side]
    lat = _lateral_sign(side)
    yc = cy + rng.uniform(-0.5, 0.35) * ry
    half_h = rng.uniform(30, 65) * s
    d_in = rng.uniform(0.8, 0.86)
    roi = _roi(anat, cx + lat * 0.75 * rx, yc, 0.35 * rx, half_h + 4 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    d = _ellipse_d(xx, yy, cx, cy, rx, ry)
    alpha = (
        _smoothstep((d - d_in) / 0.03)
        * np.minimum(1.0, 1.6 * anat.lung_alpha[y0:y1, x0:x1])
        * _smoothstep((half_h - np.abs(yy - yc)) / (8 * s))
        * _smoothstep(((xx - cx) * lat) / (4 * s))
    )
    return _finish(anat, roi, rng.uniform(0.28, 0.34) * alpha, alpha, 0.3)


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
    box = _box_from_alpha(mask, 0, 0, 64)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    alpha = mask[y0:y1, x0:x1].astype(F32) / 255.0
    return Paint(x0, y0, 0.4 * alpha, box)


PAINTERS = {
    "cardiac": paint_cardiac,
    "band": paint_band,
    "meniscus": paint_meniscus,
    "patchy": paint_patchy,
    "disc": paint_disc,
    "pneumothorax": paint_pneumothorax,
    "hilum": paint_hilum,
    "mediastinum": paint_mediastinum,
    "aortic_knob": paint_aortic_knob,
    "fracture": paint_fracture,
    "haze": paint_haze,
    "hernia": paint_hernia,
    "bullae": paint_bullae,
    "reticular": paint_reticular,
    "calcification": paint_calcification,
    "streaky": paint_streaky,
    "ring": paint_ring,
    "pleural_strip": paint_pleural_strip,
    "device": paint_device,
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


# --------------------------------------------------------------------------- composition


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def paint_lesion(img, anat, rng, painter, params=None, avoid=(), max_iou=0.3, tries=8):
    """Paint one lesion in place; returns its box, or None if no non-overlapping place was found.

    ``avoid``: boxes already painted; a proposal overlapping any of them by IoU above
    ``max_iou`` is redrawn (up to ``tries`` times).
    """
    fn = PAINTERS[painter]
    params = params or {}
    for _ in range(tries):
        paint = fn(img, anat, rng, **params)
        if paint is None:
            continue
        if any(_iou(paint.box, b) > max_iou for b in avoid):
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
