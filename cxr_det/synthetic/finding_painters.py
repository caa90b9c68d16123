"""Image-level findings painted on a synthetic chest: what a classifier can see.

The CheXpert / MIMIC-CXR observations (Irvin et al., AAAI 2019; the 14 of
:data:`cxr_det.formats.chexpert_format.CHEXPERT_OBSERVATIONS`) are drawn with the lesion
painters of :mod:`.painters` and :mod:`.lung_painters` where one fits, and with three
added here: :func:`paint_perihilar_haze` (pulmonary edema's bilateral "bat-wing" haze),
:func:`paint_large_effusion` and :func:`paint_lobar_consolidation` (larger than the
detection datasets' effusion and air-space opacity, whose painters stay as they are).
:data:`OBSERVATION_PAINTERS` maps each paintable observation to its painter;
:data:`UNPAINTED_OBSERVATIONS` are never drawn: "No Finding" (the absence of the others) and
**Atelectasis**, which the synthetic classification datasets make depend on the patient's
age alone (:mod:`.finding_labels`), so that only the clinical record can tell it.

:func:`render_findings` renders a background and paints each present observation at a
strength (1 = as the painter draws it, 0.5 = faint: how the writers draw an *uncertain*
label cell), in the fixed order of :data:`OBSERVATION_PAINTERS`. The image depends on the
generator and the painted observations only: unpainted ones draw nothing from the generator.
Sizes scale with the image (the painters are specified for ~512 px); the findings are
chosen large and contrasted enough to be seen at 64 px.
"""
import numpy as np

from cxr_det.synthetic.anatomy import (
    F32,
    ellipse_distance,
    lung_point,
    random_image_size,
    random_lung,
    render_background,
    smooth_noise,
    smoothstep,
)
from cxr_det.synthetic.painters import gaussian_blobs, make_paint, roi_grid
from cxr_det.synthetic.render import PAINTERS

__all__ = [
    "OBSERVATION_PAINTERS",
    "UNPAINTED_OBSERVATIONS",
    "FINDING_PAINTERS",
    "paint_perihilar_haze",
    "paint_large_effusion",
    "paint_lobar_consolidation",
    "paint_finding",
    "render_findings",
]


def paint_perihilar_haze(img, anat, rng, strength=(0.17, 0.22)):
    """Pulmonary edema: a soft haze around both hila, fading towards the periphery ("bat wing").

    Each side is an ellipse centred a little lateral of its hilum (about 0.6 x 0.5 of the
    lung's radii), its edge blurred over half its radius, textured by low-frequency noise
    and limited to the lung fields. ``strength``: (low, high) of the peak intensity added
    (image in [0, 1]). Returns a :class:`~.painters.Paint` covering both lungs, or None
    when nothing falls inside the image.
    """
    s = anat.scale
    left, right = anat.lungs
    x_lo, x_hi = left[0] - left[2], right[0] + right[2]
    y_mid = 0.5 * (anat.hila[0][1] + anat.hila[1][1])
    half_h = 0.8 * max(left[3], right[3])
    roi = roi_grid(anat, 0.5 * (x_lo + x_hi), y_mid, 0.5 * (x_hi - x_lo), half_h)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    alpha = np.zeros((y1 - y0, x1 - x0), F32)
    for side, (_, _, rx, ry) in enumerate(anat.lungs):
        hx, hy = anat.hila[side]
        lat = -1.0 if side == 0 else 1.0
        ex, ey = hx + lat * rng.uniform(0.25, 0.4) * rx, hy + rng.uniform(-0.05, 0.1) * ry
        d = ellipse_distance(xx, yy, ex, ey, rng.uniform(0.55, 0.7) * rx, rng.uniform(0.45, 0.6) * ry)
        np.maximum(alpha, smoothstep((1.0 - d) / 0.5), out=alpha)
    texture = 0.75 + 0.25 * np.clip(0.5 + 0.4 * smooth_noise(rng, y1 - y0, x1 - x0, 12 * s), 0.0, 1.0)
    alpha = alpha * texture * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(*strength) * alpha, alpha, 0.3)


def paint_large_effusion(img, anat, rng, height=(75, 130), strength=(0.32, 0.4)):
    """Pleural effusion, large: a homogeneous opacity filling a lung base up to a concave-up meniscus.

    Like :func:`~.painters.paint_meniscus` (the detection datasets' effusion) but taller
    (``height``: (low, high) in px at 512 px, scaled with the image) and as wide as the
    lung, so that it stays visible when the image is shrunk to 64 px. ``strength``:
    (low, high) of the intensity added. Returns a Paint or None.
    """
    s = anat.scale
    side, (cx, cy, rx, ry), lat = random_lung(anat, rng)
    x_lat = cx + lat * rx
    width = rng.uniform(1.5, 1.9) * rx
    tall = min(rng.uniform(*height) * s, 0.9 * ry)
    y_bot = cy + ry
    roi = roi_grid(anat, x_lat - lat * 0.5 * width, y_bot - 0.5 * tall, 0.5 * width + 4 * s, 0.5 * tall + 6 * s)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    t = np.clip(np.abs(xx - x_lat) / width, 0.0, 1.0)
    y_top = (y_bot - tall) + tall * 0.6 * t**1.5
    alpha = smoothstep((yy - y_top) / (4.0 * s)) * smoothstep((1.0 - t) / 0.15)
    alpha = alpha * np.minimum(1.0, 1.5 * anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(*strength) * alpha, alpha, 0.3)


def paint_lobar_consolidation(img, anat, rng, radius=(45, 80), strength=(0.3, 0.38)):
    """Consolidation: a large dense patch in the mid or lower zone of one lung.

    Overlapping Gaussian blobs (an irregular outline) thresholded into a dense region of
    ``radius`` (low, high; px at 512 px, scaled) with a faint mottled texture (air
    bronchograms), limited to the lung field. ``strength``: intensity added. Returns a
    Paint or None.
    """
    s = anat.scale
    side, cx, cy = lung_point(anat, rng, a_range=(-0.3, 0.3), b_range=(-0.1, 0.5))
    r = rng.uniform(*radius) * s
    roi = roi_grid(anat, cx, cy, 1.4 * r, 1.4 * r)
    if roi is None:
        return None
    x0, y0, x1, y1, xx, yy = roi
    total = gaussian_blobs(rng, roi, cx, cy, (4, 7), 0.4, r, (0.4, 0.55), r)
    envelope = smoothstep((total - 0.3) / 0.4)
    texture = 0.8 + 0.2 * np.clip(0.5 + 0.4 * smooth_noise(rng, y1 - y0, x1 - x0, 6 * s), 0.0, 1.0)
    alpha = envelope * texture * np.sqrt(anat.lung_alpha[y0:y1, x0:x1])
    return make_paint(roi, rng.uniform(*strength) * alpha, alpha, 0.3)


#: Painter name -> painter: those of :data:`cxr_det.synthetic.render.PAINTERS` and this module's.
FINDING_PAINTERS = {
    **PAINTERS,
    "perihilar_haze": paint_perihilar_haze,
    "large_effusion": paint_large_effusion,
    "lobar_consolidation": paint_lobar_consolidation,
}

#: CheXpert / MIMIC-CXR observation -> (painter name, painter keyword arguments).
OBSERVATION_PAINTERS = {
    "Enlarged Cardiomediastinum": ("mediastinum", {}),
    "Cardiomegaly": ("cardiac", {}),
    "Lung Opacity": ("haze", {"strength": (0.24, 0.3)}),
    "Lung Lesion": ("disc", {"radius_range": (24, 40)}),
    "Edema": ("perihilar_haze", {}),
    "Consolidation": ("lobar_consolidation", {}),
    "Pneumonia": ("streaky", {}),
    "Pneumothorax": ("pneumothorax", {}),
    "Pleural Effusion": ("large_effusion", {}),
    "Pleural Other": ("pleural_strip", {}),
    "Fracture": ("fracture", {}),
    "Support Devices": ("device", {}),
}
#: Observations never painted: "No Finding", and the clinical-only Atelectasis.
UNPAINTED_OBSERVATIONS = ("No Finding", "Atelectasis")


def paint_finding(img, anat, rng, painter, params=None, strength=1.0, tries=4):
    """Add one finding to ``img`` (float32 HxW, modified in place) at ``strength`` x its painter's delta.

    ``painter``: a key of :data:`FINDING_PAINTERS`; ``params``: its keyword arguments.
    A painter that places its pattern outside the image is retried (up to ``tries``
    times). Returns the painted XYXY box (integer pixels, x1/y1 exclusive) or None.
    Raises KeyError for an unknown painter.
    """
    fn = FINDING_PAINTERS[painter]
    for _ in range(int(tries)):
        paint = fn(img, anat, rng, **(params or {}))
        if paint is None:
            continue
        h, w = paint.delta.shape
        img[paint.y0 : paint.y0 + h, paint.x0 : paint.x0 + w] += float(strength) * paint.delta
        return paint.box
    return None


def render_findings(rng, size, findings, height=None, width=None):
    """A synthetic chest showing ``findings``; float32 HxW in [0, 1] and the painted observations.

    Args:
        rng: numpy Generator (the background, then each painted finding, draw from it).
        size: nominal image side in pixels (sides vary 0.85-1.15 x, see
            :func:`~cxr_det.synthetic.anatomy.random_image_size`) unless ``height`` and
            ``width`` are given.
        findings: mapping observation -> strength (0 or less: absent; 1: full; 0.5: faint).
            Observations of :data:`UNPAINTED_OBSERVATIONS` are ignored (they draw nothing).

    Returns:
        ``(img, {observation: box})`` for the findings that could be placed.

    Raises:
        KeyError: an observation neither painted nor in :data:`UNPAINTED_OBSERVATIONS`.
    """
    unknown = sorted(set(findings) - set(OBSERVATION_PAINTERS) - set(UNPAINTED_OBSERVATIONS))
    if unknown:
        raise KeyError(f"render_findings: no painter for observation(s) {unknown}; painted: {sorted(OBSERVATION_PAINTERS)}")
    if height is None or width is None:
        height, width = random_image_size(rng, size)
    img, anat = render_background(rng, height, width)
    placed = {}
    for name, (painter, params) in OBSERVATION_PAINTERS.items():
        strength = float(findings.get(name, 0.0))
        if strength > 0.0:
            box = paint_finding(img, anat, rng, painter, params, strength)
            if box is not None:
                placed[name] = box
    np.clip(img, 0.0, 1.0, out=img)
    return img, placed
