"""Plane geometry for REFLACX ellipses: ellipse polygons and their clipping to the image.

REFLACX radiologists drew axis-aligned ellipses, each inscribed in its ``(xmin, ymin, xmax,
ymax)`` box. Detectron2 wants instance masks as polygons, so an ellipse becomes a polygon
whose vertices lie on the ellipse, clipped exactly to the image rectangle. Polygons are flat
lists ``[x0, y0, x1, y1, ...]`` as in COCO / detectron2 segmentations. Box overlap (IoU) is
:mod:`cxr_det.utils.boxes`.
"""
import math
from functools import lru_cache

__all__ = [
    "MIN_ELLIPSE_VERTICES",
    "ellipse_polygon",
    "clip_polygon_to_image",
    "polygon_area",
    "polygon_bbox",
]

# An inscribed n-gon covers n/(2*pi) * sin(2*pi/n) of the ellipse's area: 98.4% for n = 20,
# 99.8% for the default n = 64. Fewer vertices than this would miss the 2% area tolerance.
MIN_ELLIPSE_VERTICES = 20


@lru_cache(maxsize=16)
def _unit_circle(num_vertices):
    """Cosines and sines of ``num_vertices`` equally spaced angles starting at 0.

    ``num_vertices`` is a multiple of 4, so the angles 0, pi/2, pi, 3pi/2 are among them;
    those four are set exactly so that the polygon touches all four sides of its box.
    """
    quarter = num_vertices // 4
    cos, sin = [], []
    for k in range(num_vertices):
        if k % quarter == 0:
            c, s = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[k // quarter]
        else:
            t = 2.0 * math.pi * k / num_vertices
            c, s = math.cos(t), math.sin(t)
        cos.append(c)
        sin.append(s)
    return tuple(cos), tuple(sin)


def ellipse_polygon(box, num_vertices=64):
    """Polygon of the axis-aligned ellipse inscribed in the XYXY ``box``, as a flat list.

    The centre is the box centre and the semi-axes are half the box sides. Vertices lie on the
    ellipse at equally spaced parametric angles; ``num_vertices`` is rounded up to a multiple of
    4 so the four extreme points are vertices and the polygon's bounding box is the box itself.
    With at least :data:`MIN_ELLIPSE_VERTICES` vertices the polygon's area is within 2% of
    ``pi * a * b`` whatever the aspect ratio (the affine map from a circle preserves the ratio).
    """
    if num_vertices < MIN_ELLIPSE_VERTICES:
        raise ValueError(
            f"ellipse_polygon needs at least {MIN_ELLIPSE_VERTICES} vertices for its area to be "
            f"within 2% of the ellipse's; got {num_vertices}"
        )
    n = -(-int(num_vertices) // 4) * 4
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    a, b = (x1 - x0) / 2.0, (y1 - y0) / 2.0
    cos, sin = _unit_circle(n)
    poly = []
    for c, s in zip(cos, sin):
        poly.append(cx + a * c)
        poly.append(cy + b * s)
    return poly


def _clip_half_plane(points, inside, intersect):
    """One Sutherland-Hodgman pass: keep the part of a closed polygon inside one half-plane."""
    out = []
    if not points:
        return out
    prev = points[-1]
    prev_in = inside(prev)
    for cur in points:
        cur_in = inside(cur)
        if cur_in:
            if not prev_in:
                out.append(intersect(prev, cur))
            out.append(cur)
        elif prev_in:
            out.append(intersect(prev, cur))
        prev, prev_in = cur, cur_in
    return out


def _cross_x(p, q, x):
    """Point of segment p-q on the vertical line at ``x`` (p and q on opposite sides)."""
    t = (x - p[0]) / (q[0] - p[0])
    return (x, p[1] + t * (q[1] - p[1]))


def _cross_y(p, q, y):
    """Point of segment p-q on the horizontal line at ``y`` (p and q on opposite sides)."""
    t = (y - p[1]) / (q[1] - p[1])
    return (p[0] + t * (q[0] - p[0]), y)


def clip_polygon_to_image(poly, width, height):
    """Exact intersection of a convex flat polygon with the image ``[0, width] x [0, height]``.

    Sutherland-Hodgman clipping against the four image edges. Returns a flat list, or ``[]``
    when nothing of positive area is left (polygon outside the image or only touching it).
    """
    pts = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
    w, h = float(width), float(height)
    if pts and all(0.0 <= x <= w and 0.0 <= y <= h for x, y in pts):
        clipped = pts
    else:
        clipped = _clip_half_plane(pts, lambda p: p[0] >= 0.0, lambda p, q: _cross_x(p, q, 0.0))
        clipped = _clip_half_plane(clipped, lambda p: p[0] <= w, lambda p, q: _cross_x(p, q, w))
        clipped = _clip_half_plane(clipped, lambda p: p[1] >= 0.0, lambda p, q: _cross_y(p, q, 0.0))
        clipped = _clip_half_plane(clipped, lambda p: p[1] <= h, lambda p, q: _cross_y(p, q, h))
    # Drop repeated vertices that clipping creates where the polygon touches an edge.
    dedup = []
    for p in clipped:
        if not dedup or p != dedup[-1]:
            dedup.append(p)
    while len(dedup) > 1 and dedup[0] == dedup[-1]:
        dedup.pop()
    if len(dedup) < 3:
        return []
    flat = [v for p in dedup for v in p]
    if polygon_area(flat) <= 0.0:
        return []
    return flat


def polygon_area(poly):
    """Unsigned area of a simple flat polygon (shoelace formula)."""
    n = len(poly) // 2
    if n < 3:
        return 0.0
    twice = 0.0
    for i in range(n):
        j = (i + 1) % n
        twice += poly[2 * i] * poly[2 * j + 1] - poly[2 * j] * poly[2 * i + 1]
    return abs(twice) / 2.0


def polygon_bbox(poly):
    """XYXY bounding box of a flat polygon."""
    xs, ys = poly[0::2], poly[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]
