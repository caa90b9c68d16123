"""The background of a synthetic chest radiograph and where its anatomy lies.

Images are float32 arrays in [0, 1] where 1 is dense (bright, as displayed). The
background has body soft tissue, two dark lung fields whose lower borders form the
diaphragm domes, a bright mediastinum and spine, a heart shadow, clavicles, faint ribs
and noise; :class:`Anatomy` says where the lungs, heart, hila and mediastinum were put,
so the lesion painters (:mod:`.painters`, :mod:`.lung_painters`) can place lesions
plausibly. This module also holds the shape primitives the painters share (smooth step,
band-limited noise, elliptic distance). Sizes are specified for a ~512 px image and
scaled with the image.
"""
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "F32",
    "Anatomy",
    "smoothstep",
    "smooth_noise",
    "ellipse_distance",
    "rotated_coords",
    "random_image_size",
    "render_background",
    "lung_point",
    "lateral_sign",
    "random_lung",
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


def smoothstep(t):
    """0 below 0, 1 above 1, smooth in between (array in, float32 array out)."""
    t = np.clip(t, 0.0, 1.0).astype(F32, copy=False)
    return t * t * (3.0 - 2.0 * t)


def smooth_noise(rng, h, w, cell):
    """Band-limited noise of unit std on an h x w grid with features about ``cell`` px wide."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    small = rng.standard_normal((gh, gw), dtype=F32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(big.std())
    return big / std if std > 1e-6 else big


def ellipse_distance(xx, yy, cx, cy, rx, ry, angle=0.0):
    """Normalised elliptic radius (1 on the ellipse border), optionally rotated by ``angle`` rad."""
    dx, dy = xx - cx, yy - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)


def rotated_coords(xx, yy, cx, cy, theta):
    """Pixel grids in a frame centred on (cx, cy) and turned by ``theta`` rad (y down).

    Returns ``(along, across)``: the coordinate along the direction ``theta`` and the one
    perpendicular to it, broadcast from ``xx`` (1 x W) and ``yy`` (H x 1), in pixels.
    """
    c, sn = math.cos(theta), math.sin(theta)
    along = (xx - cx) * c + (yy - cy) * sn
    across = -(xx - cx) * sn + (yy - cy) * c
    return along, across


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
    body_d = ellipse_distance(u, v, 0.5 + rng.normal(0, 0.01), 0.6, rng.uniform(0.45, 0.52), 0.66)
    body = smoothstep((1.0 - body_d) / 0.07)

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
        d = ellipse_distance(u, v, cx, cy, rx, ry)
        np.maximum(lung_alpha, smoothstep((1.0 - d) / 0.12), out=lung_alpha)

    # Heart shadow, lower middle, bulging towards the image right (patient's left).
    heart_n = (0.5 + rng.uniform(0.03, 0.06), lung_cy + lung_ry * rng.uniform(0.5, 0.6), rng.uniform(0.12, 0.145), rng.uniform(0.09, 0.11))
    heart = smoothstep((1.0 - ellipse_distance(u, v, *heart_n)) / 0.15)

    # Mediastinum (widening downwards) and spine with vertebral modulation.
    med_hw = 0.055 + 0.03 * v
    mediastinum = smoothstep((med_hw - np.abs(u - 0.5)) / 0.02) * smoothstep((v - 0.05) / 0.1)
    spine = smoothstep((0.028 - np.abs(u - 0.5)) / 0.01) * (0.85 + 0.15 * np.cos(2 * np.pi * v * rng.uniform(11, 15)))

    # Ribs: curved bright bands inside the lungs; clavicles: two oblique bands at the top.
    n_ribs = rng.uniform(9.0, 11.0)
    rib_phase = (v - rng.uniform(0.7, 1.0) * (u - 0.5) ** 2) * n_ribs + rng.uniform(0, 1)
    ribs = np.clip((np.cos(2 * np.pi * rib_phase) - 0.55) / 0.45, 0.0, 1.0)
    clav_y = rng.uniform(0.13, 0.17)
    clav = smoothstep((0.012 - np.abs(v - clav_y - 0.25 * np.abs(u - 0.5) + 0.02)) / 0.008) * smoothstep((0.36 - np.abs(u - 0.5)) / 0.05)

    img = np.full((H, W), 0.06, F32)
    img += 0.42 * body
    img -= 0.26 * lung_alpha * (1.0 - 0.6 * heart) * (1.0 - 0.6 * mediastinum) * (0.8 + 0.2 * (1.0 - v))
    img += 0.20 * mediastinum
    img += 0.10 * spine
    img += 0.12 * heart
    img += 0.06 * ribs * lung_alpha
    img += 0.10 * clav
    # Lung markings, broad density variation and quantum noise.
    img += 0.025 * lung_alpha * smooth_noise(rng, H, W, 10 * scale)
    img += 0.03 * smooth_noise(rng, H, W, 90 * scale)
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


def lung_point(anat, rng, side=None, a_range=(-0.55, 0.55), b_range=(-0.6, 0.6), lateral=False):
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


def lateral_sign(side):
    """+1 if the chest wall of lung ``side`` is towards larger x, else -1."""
    return -1.0 if side == 0 else 1.0


def random_lung(anat, rng):
    """One lung picked at random (one ``rng.integers`` draw): ``(side, (cx, cy, rx, ry), lat)``
    with the lung's ellipse in pixels and :func:`lateral_sign` of the side."""
    side = int(rng.integers(2))
    return side, anat.lungs[side], lateral_sign(side)
