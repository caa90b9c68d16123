"""Geometry of REFLACX ellipses: polygon area and extent, clipping to the image; the box IoU
that merges them (cxr_det.utils.boxes)."""
import math

import pytest

from cxr_det.data.ellipse import (
    clip_polygon_to_image,
    ellipse_polygon,
    polygon_area,
    polygon_bbox,
)
from cxr_det.utils.boxes import box_iou


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 10, 10),
        (100, 200, 900, 1400),
        (5, 5, 2005, 25),  # 2000 x 20: very elongated
        (0, 0, 3, 3000),  # 3 x 3000
        (12.5, 7.25, 13.5, 8.0),  # sub-pixel
    ],
)
@pytest.mark.parametrize("num_vertices", [20, 33, 64, 128])
def test_ellipse_polygon_area_and_bbox(box, num_vertices):
    poly = ellipse_polygon(box, num_vertices)
    a, b = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    assert len(poly) % 8 == 0 and len(poly) >= 2 * num_vertices
    assert polygon_area(poly) == pytest.approx(math.pi * a * b, rel=0.02)
    assert polygon_bbox(poly) == pytest.approx(list(box), abs=1e-9)
    # Every vertex lies on the ellipse.
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for x, y in zip(poly[0::2], poly[1::2]):
        assert ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 == pytest.approx(1.0, abs=1e-9)


def test_ellipse_polygon_default_is_close_and_too_few_vertices_rejected():
    poly = ellipse_polygon((0, 0, 200, 100))
    assert len(poly) == 128
    assert polygon_area(poly) == pytest.approx(math.pi * 100 * 50, rel=0.002)
    with pytest.raises(ValueError, match="at least"):
        ellipse_polygon((0, 0, 10, 10), num_vertices=8)


def test_clip_square_against_each_edge():
    square = [-5, -5, 5, -5, 5, 5, -5, 5]
    clipped = clip_polygon_to_image(square, 100, 100)
    assert polygon_area(clipped) == pytest.approx(25.0)
    assert polygon_bbox(clipped) == pytest.approx([0, 0, 5, 5])
    right_bottom = [95, 90, 110, 90, 110, 120, 95, 120]
    clipped = clip_polygon_to_image(right_bottom, 100, 100)
    assert polygon_bbox(clipped) == pytest.approx([95, 90, 100, 100])
    assert polygon_area(clipped) == pytest.approx(50.0)


def test_clip_triangle_exact():
    # Right triangle (0,0)-(20,0)-(0,20) clipped to a 10x10 image: the square minus nothing
    # above the hypotenuse x + y = 20, which only touches the corner (10, 10).
    clipped = clip_polygon_to_image([0, 0, 20, 0, 0, 20], 10, 10)
    assert polygon_area(clipped) == pytest.approx(100.0)
    # Same triangle in a 15x15 image: square 225 minus the corner triangle of legs 10 -> 175.
    clipped = clip_polygon_to_image([0, 0, 20, 0, 0, 20], 15, 15)
    assert polygon_area(clipped) == pytest.approx(225.0 - 50.0)


def test_clip_ellipse_half_outside_matches_half_area():
    # Centred on the left edge: exactly the right half of the ellipse remains.
    poly = ellipse_polygon((-40, 10, 40, 70), 256)
    clipped = clip_polygon_to_image(poly, 100, 100)
    assert polygon_area(clipped) == pytest.approx(polygon_area(poly) / 2, rel=1e-9)
    assert polygon_area(clipped) == pytest.approx(math.pi * 40 * 30 / 2, rel=0.01)
    assert polygon_bbox(clipped) == pytest.approx([0, 10, 40, 70])


def test_clip_ellipse_corner_matches_numeric_integration():
    # Circle of radius 50 centred at (10, 20), clipped to [0, 200] x [0, 200].
    cx, cy, r = 10.0, 20.0, 50.0
    poly = ellipse_polygon((cx - r, cy - r, cx + r, cy + r), 512)
    clipped = clip_polygon_to_image(poly, 200, 200)
    n = 20000
    dx = (cx + r) / n
    expected = 0.0
    for i in range(n):
        x = (i + 0.5) * dx
        half = math.sqrt(max(r * r - (x - cx) ** 2, 0.0))
        expected += max(0.0, (cy + half) - max(cy - half, 0.0)) * dx
    assert polygon_area(clipped) == pytest.approx(expected, rel=0.002)
    xs, ys = clipped[0::2], clipped[1::2]
    assert min(xs) >= 0 and min(ys) >= 0


def test_clip_inside_unchanged_and_outside_empty():
    poly = ellipse_polygon((10, 10, 50, 30))
    assert clip_polygon_to_image(poly, 100, 100) == pytest.approx(poly)
    assert clip_polygon_to_image(ellipse_polygon((110, 10, 150, 30)), 100, 100) == []
    assert clip_polygon_to_image(ellipse_polygon((-50, -50, -10, -10)), 100, 100) == []
    # A square touching the image only along its edge has no area inside.
    assert clip_polygon_to_image([-10, 0, 0, 0, 0, 10, -10, 10], 100, 100) == []
    assert clip_polygon_to_image([], 100, 100) == []


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    assert box_iou([0, 0, 0, 10], [0, 0, 10, 10]) == 0.0
