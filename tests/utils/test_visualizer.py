"""Pictures a reader can read: each legibility rule checked on real drawn output."""
import json

import numpy as np
import pytest

import cxr_det  # noqa: F401
from detectron2.structures import BoxMode

from cxr_det.utils.training_curves import metric_series, training_figures
from cxr_det.utils.drawing import MIN_LONG_SIDE, TITLE_BACKGROUND, side_by_side
from cxr_det.utils.visualizer import (
    draw_ground_truth,
    draw_predictions,
    ground_truth_title,
    predictions_title,
    reader_aliases,
    render_ground_truth,
    render_predictions,
)

CLASSES = ["Atelectasis", "Consolidation", "Enlarged cardiac silhouette", "Pleural abnormality", "Pulmonary edema"]
GREY = 128


def _grey(height, width):
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def _anno(box, category_id, readers, ellipse=False):
    x0, y0, x1, y1 = box
    if ellipse:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        polygon = np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], 1).ravel().tolist()
    else:
        polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
    return {"bbox": list(box), "bbox_mode": BoxMode.XYXY_ABS, "category_id": category_id,
            "segmentation": [polygon], "iscrowd": 0, "readers": list(readers)}


def _label_pixels(drawing, label):
    """The drawn pixels of a label's rectangle (rows below the title strip)."""
    x0, y0, x1, y1 = (int(round(v)) for v in label.rect)
    top = drawing.title_height
    return drawing.image[top + y0 + 1 : top + y1 - 1, x0 + 1 : x1 - 1].astype(int)


def _ink_rows(drawing, label):
    """Rows of a label holding text ink (white text on the dark tab10 blue of class 0)."""
    pixels = _label_pixels(drawing, label)
    return np.flatnonzero((pixels.min(axis=2) > 200).any(axis=1))


@pytest.mark.parametrize("box", [(585, 2, 600, 14), (0, 380, 12, 400), (560, 370, 600, 400)])
def test_labels_stay_inside_the_image_for_boxes_at_its_edges(box):
    h, w = 400, 600
    drawing = render_predictions(_grey(h, w), [box], [0.87], [2], CLASSES)
    (label,) = drawing.labels
    x0, y0, x1, y1 = label.rect
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, label
    assert label.text == "Enlarged cardiac silhouette 0.87"
    # The rectangle is really painted: the label's background, not the grey image, fills it.
    pixels = _label_pixels(drawing, label)
    assert (np.abs(pixels - GREY).sum(axis=2) > 60).mean() > 0.6
    # And the whole text is in it: ink columns reach across most of the rectangle.
    ink = np.flatnonzero((pixels.min(axis=2) > 200).any(axis=0))
    assert ink.size and ink[-1] - ink[0] > 0.8 * (x1 - x0 - 2 * drawing.font_px * 0.25 - 2)


def test_label_font_is_the_same_for_a_tiny_and_a_huge_box():
    image = _grey(500, 500)
    tiny = render_predictions(image, [(200, 200, 206, 205)], [0.9], [0], CLASSES)
    huge = render_predictions(image, [(10, 60, 490, 490)], [0.9], [0], CLASSES)
    both = render_predictions(image, [(200, 200, 206, 205), (10, 60, 490, 490)], [0.9, 0.8], [0, 0], CLASSES)
    heights = {round(l.rect[3] - l.rect[1], 3) for d in (tiny, huge, both) for l in d.labels}
    assert len(heights) == 1
    ink = [len(_ink_rows(d, l)) for d in (tiny, huge, both) for l in d.labels]
    assert max(ink) - min(ink) <= 1 and min(ink) >= 8, ink
    # The font follows the image: a larger drawing gets larger text.
    bigger = render_predictions(_grey(1500, 1500), [(600, 600, 618, 615)], [0.9], [0], CLASSES)
    assert len(_ink_rows(bigger, bigger.labels[0])) > 2 * min(ink)


def test_two_readers_identical_boxes_give_one_label_naming_both():
    box = (100.0, 120.0, 220.0, 200.0)
    record = {
        "height": 400, "width": 400, "reading_ids": ["P101R544201", "P102R856065", "P103R205117"],
        "annotations": [
            _anno(box, 0, ["P101R544201"], ellipse=True),
            _anno(box, 0, ["P103R205117"], ellipse=True),
            _anno((300, 300, 340, 330), 3, ["P102R856065"], ellipse=True),
        ],
    }
    assert reader_aliases(record) == {"P101R544201": "R1", "P103R205117": "R3", "P102R856065": "R2"}
    drawing = render_ground_truth(_grey(400, 400), record, CLASSES, title=ground_truth_title(3))
    texts = sorted(l.text for l in drawing.labels)
    assert texts == ["Atelectasis — readers R1, R3", "Pleural abnormality — reader R2"]
    # The key of the aliases is in the title strip, below the title.
    assert drawing.title_height > 2 * drawing.font_px
    without_names = render_ground_truth(_grey(400, 400), record, CLASSES, show_readers=False)
    assert sorted(l.text for l in without_names.labels) == ["Atelectasis (2 readers)", "Pleural abnormality"]


def test_vindr_rad_ids_kept_and_sorted_as_numbers():
    record = {"annotations": [_anno((50, 50, 150, 150), 1, [r]) for r in ("R13", "R8", "R9")]}
    assert reader_aliases(record) == {"R13": "R13", "R8": "R8", "R9": "R9"}
    (label,) = render_ground_truth(_grey(300, 300), record, CLASSES).labels
    assert label.text == "Consolidation — readers R8, R9, R13"


def test_a_single_reading_does_not_repeat_its_reader_on_every_label():
    record = {"reading_ids": ["P300R192864"],
              "annotations": [_anno((10, 10, 60, 60), 0, ["P300R192864"]), _anno((100, 100, 160, 160), 4, ["P300R192864"])]}
    drawing = render_ground_truth(_grey(200, 200), record, CLASSES)
    assert sorted(l.text for l in drawing.labels) == ["Atelectasis", "Pulmonary edema"]
    assert drawing.title_height == 0


def test_labels_of_overlapping_boxes_are_stacked_not_on_top_of_each_other():
    box = (150, 150, 250, 230)
    drawing = render_predictions(_grey(400, 400), [box] * 4, [0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3], CLASSES)
    rects = [l.rect for l in drawing.labels]
    assert len(rects) == 4
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = rects[i], rects[j]
            overlap = min(a[2], b[2]) - max(a[0], b[0]) > 0 and min(a[3], b[3]) - max(a[1], b[1]) > 0
            assert not overlap, (drawing.labels[i], drawing.labels[j])
    # Same class, different readers but far apart boxes: two labels, not merged.
    record = {"annotations": [_anno((10, 10, 50, 50), 0, ["R1"]), _anno((300, 300, 350, 350), 0, ["R2"])]}
    assert len(render_ground_truth(_grey(400, 400), record, CLASSES).labels) == 2


def test_a_256_pixel_image_is_drawn_at_the_minimum_size_with_boxes_scaled():
    image = _grey(256, 200)
    box = (40.0, 60.0, 120.0, 160.0)
    drawing = render_predictions(image, [box], [0.5], [1], CLASSES, min_long_side=MIN_LONG_SIDE)
    assert drawing.title_height == 0
    assert drawing.image.shape[:2] == (MIN_LONG_SIDE, 800) and drawing.scale == pytest.approx(4.0)
    drawn = drawing.image.astype(int)
    changed = np.abs(drawn - GREY).sum(axis=2) > 60
    x0, y0, x1, y1 = (int(v * 4) for v in box)
    assert changed[y0 + 20 : y1 - 20, x0 - 1 : x0 + 2].any(axis=1).mean() > 0.95  # left edge, scaled
    assert not changed[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20].any()  # inside the box stays untouched
    # The drawing functions' default keeps the image's own frame (predict.py draws in it).
    assert draw_predictions(image, [box], [0.5], [1], CLASSES).shape == (256, 200, 3)
    assert draw_ground_truth(image, {"annotations": [_anno(box, 0, ["R1"])]}, CLASSES).shape == (256, 200, 3)


def test_panels_have_title_strips():
    image = _grey(256, 256)
    record = {"annotations": [_anno((20, 20, 80, 80), 0, ["R1"])]}
    gt = render_ground_truth(image, record, CLASSES, show_readers=False, min_long_side=768,
                             title=ground_truth_title(1))
    pr = render_predictions(image, [(25, 22, 85, 78)], [0.74], [0], CLASSES, min_long_side=768,
                            title=predictions_title(1, 0.3))
    assert ground_truth_title(1) == "Ground truth (1 box)" and ground_truth_title(0) == "Ground truth (no boxes)"
    assert predictions_title(1, 0.3) == "Predictions, score ≥ 0.3 (1)"
    for drawing in (gt, pr):
        strip = drawing.image[: drawing.title_height].astype(int)
        assert drawing.title_height >= drawing.font_px and drawing.image.shape[:2] == (768 + drawing.title_height, 768)
        assert (strip == TITLE_BACKGROUND).all(axis=2).mean() > 0.7  # a dark strip ...
        assert (strip.min(axis=2) > 200).sum() > 50  # ... with white title text in it
        assert drawing.image[drawing.title_height :].mean() > 100  # the X-ray below it
    panels = side_by_side(gt.image, pr.image)
    assert panels.shape == (768 + gt.title_height, 2 * 768 + 8, 3)


def test_an_image_without_findings_says_so():
    drawing = render_ground_truth(_grey(300, 300), {"annotations": []}, CLASSES)
    assert (np.abs(drawing.image.astype(int) - GREY).sum(axis=2) > 60).sum() > 100
    assert drawing.labels == []


def test_training_curve_legends_are_outside_the_axes(tmp_path):
    records = []
    for it in range(19, 400, 20):
        records.append({"iteration": it, "lr": 0.01, "total_loss": 2.0 - it / 400, "loss_cls": 1.0 - it / 800,
                        "loss_box_reg": 0.8, "loss_rpn_cls": 0.3, "loss_rpn_loc": 0.1})
        if (it + 1) % 100 == 0:
            records.append({"iteration": it, "val_total_loss": 2.1 - it / 400, "val_loss_cls": 1.1,
                            "bbox/AP": it / 10, "bbox/AP50": it / 5, "froc/CPM": it / 8})
    figures = training_figures(metric_series(json.loads(json.dumps(records))))
    assert set(figures) == {"losses", "metrics", "lr"}
    for kind in ("losses", "metrics"):
        fig = figures[kind]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        width = fig.get_figwidth() * fig.dpi
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= area.x1, f"{kind}: legend over the curves"
            assert box.x1 <= width + 0.5, f"{kind}: legend cut off at the figure's right edge"
    labels = [t.get_text() for t in figures["losses"].axes[0].get_legend().get_texts()]
    assert labels == ["total_loss", "loss_box_reg", "loss_cls", "loss_rpn_cls", "loss_rpn_loc", "training", "validation"]


def test_drawing_files_names_and_results_grouping():
    """PNG names for integer (REFLACX) and text (VinDr) image ids; results of unknown images refused."""
    from cxr_det.utils.drawing_files import drawing_file_name, results_by_image

    assert drawing_file_name({"file_name": "/d/abc.jpg", "image_id": 7}) == "00007_abc.png"
    assert drawing_file_name({"file_name": "/d/9a8b.png", "image_id": "9a8b"}) == "9a8b.png"
    assert drawing_file_name({"file_name": "/d/x.dicom", "image_id": "y"}) == "y_x.png"
    records = [{"image_id": 1}, {"image_id": 2}]
    results = [{"image_id": 1, "score": 0.9}, {"image_id": 1, "score": 0.1}, {"image_id": 2, "score": 0.5}]
    grouped = results_by_image(results, records, 0.3)
    assert [r["score"] for r in grouped[1]] == [0.9] and [r["score"] for r in grouped[2]] == [0.5]
    with pytest.raises(ValueError, match=r"res\.json: 1 image_id\(s\) not in dataset reflacx_val \(e\.g\. \[3\]\)"):
        results_by_image(results + [{"image_id": 3, "score": 0.0}], records, 0.3, "res.json", "reflacx_val")
