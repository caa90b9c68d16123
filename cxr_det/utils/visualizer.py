"""Drawings of chest X-ray ground truth and predictions that a reader can read.

The canvas (drawing frame, label font, label layout, title strips, panels) is
:mod:`cxr_det.utils.drawing`; this module decides what goes on it:

- **Ground truth** (:func:`render_ground_truth`): outlines, REFLACX ellipse masks, class
  names and readers.
- **Readers merged.** Ground-truth boxes of one class from several readers that overlap at
  IoU >= ``merge_iou`` (the PASCAL match criterion, :data:`MERGE_IOU`) share one label naming
  the readers ("Atelectasis — readers R1, R3"); every reader's outline is still drawn.
  Titles also carry the key of reader aliases when reader ids are long (REFLACX reading ids).
- **Predictions** (:func:`render_predictions`): boxes with ``"<class> <score>"``, best first.
"""
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from detectron2.structures import BoxMode

from cxr_det.formats.vindr_format import VINDR_CONSENSUS_READER as CONSENSUS_READER
from cxr_det.data.image_io import read_image
from cxr_det.utils.boxes import box_iou
from cxr_det.utils.drawing import (
    Canvas,
    Drawing,
    class_color,
    finish_drawing,
    label_font_px,
    prepare_image,
)

__all__ = [
    "MERGE_IOU",
    "load_rgb",
    "reader_aliases",
    "render_ground_truth",
    "render_predictions",
    "draw_ground_truth",
    "draw_predictions",
    "ground_truth_title",
    "predictions_title",
]

MERGE_IOU = 0.5  # same-class boxes of different readers at this IoU share a label
FILL_ALPHA = 0.2  # opacity of a mask fill where all readers of a merged group overlap
_SHORT_READER = re.compile(r"^[A-Za-z]{0,3}\d{1,3}$")  # VinDr rad_ids: R1..R17


def load_rgb(file_name) -> np.ndarray:
    """An image file (PNG/JPEG/DICOM) as ``(H, W, 3)`` uint8 RGB; DICOMs display-corrected."""
    return read_image(file_name, "RGB")


def reader_aliases(record: dict) -> Dict[str, str]:
    """Short display names of the readers in a dataset dict's annotations.

    Short ids (VinDr ``rad_id`` such as ``R9``) are kept; otherwise (REFLACX reading ids such
    as ``P102R856065``) readers become ``R1..Rn`` in the order of ``record["reading_ids"]``
    (first appearance for ids not listed there). The consensus reader of VinDr's test labels is
    left out. Returns ``{reader id: alias}``.
    """
    seen = []
    for anno in record.get("annotations", []):
        for reader in anno.get("readers") or ():
            if reader != CONSENSUS_READER and reader not in seen:
                seen.append(reader)
    if all(_SHORT_READER.match(str(r)) for r in seen):
        return {r: str(r) for r in seen}
    listed = [r for r in record.get("reading_ids", []) if r in seen]
    ordered = listed + [r for r in seen if r not in listed]
    return {r: f"R{i + 1}" for i, r in enumerate(ordered)}


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _reader_groups(boxes: Sequence[Sequence[float]], classes: Sequence[int], merge_iou: float) -> List[List[int]]:
    """Indices grouped by single linkage over same-class pairs at IoU >= merge_iou."""
    parent = list(range(len(boxes)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if classes[i] == classes[j] and box_iou(boxes[i], boxes[j]) >= merge_iou:
                parent[root(j)] = root(i)
    groups: Dict[int, List[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def render_ground_truth(
    image_rgb: np.ndarray,
    record: dict,
    class_names: Sequence[str],
    show_readers: bool = True,
    scale: float = 1.0,
    *,
    min_long_side: int = 0,
    merge_iou: float = MERGE_IOU,
    title: Optional[str] = None,
) -> Drawing:
    """Draw a dataset dict's annotations: outlines, class names and readers.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 RGB in the frame of ``record["bbox"]`` values.
        record: detectron2 dataset dict; ``annotations`` with ``bbox``/``bbox_mode``,
            ``category_id``, optional ``segmentation`` polygons (REFLACX ellipses, drawn filled
            with their box dashed; 4-corner polygons are taken as the box itself) and ``readers`` (reader ids). ``iscrowd`` ones are skipped.
        class_names: name of each ``category_id``.
        show_readers: name the readers on labels when the record has more than one reader.
            Same-class boxes of several readers overlapping at ``merge_iou`` share one label:
            "Atelectasis — readers R1, R3", or "Atelectasis (2 readers)" without names.
        scale: output scale on top of the ``min_long_side`` upscaling (:func:`drawing_scale`).
        min_long_side: draw small images upscaled to at least this long side (0: never).
        title: text of a strip above the image; with aliased reader ids (:func:`reader_aliases`)
            the strip also lists "R1 = <reading id>" (created even without a title).

    Returns:
        :class:`Drawing`; labels are in drawn-image pixels.

    Raises:
        ValueError: for a non-RGB image or a non-positive ``scale``.
    """
    image, s = prepare_image(image_rgb, scale, min_long_side)
    canvas = Canvas(image, label_font_px(*image.shape[:2]))
    annos = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    aliases = reader_aliases(record)
    name_readers = show_readers and len(aliases) > 1
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    classes = [int(a["category_id"]) for a in annos]
    groups = _reader_groups(boxes, classes, merge_iou)
    requests = []
    for group in groups:
        color = class_color(classes[group[0]], len(class_names))
        # Where every reader of the group agrees the fills add up to FILL_ALPHA, never more.
        fill_alpha = 1 - (1 - FILL_ALPHA) ** (1 / len(group))
        for i in group:
            drawn_box = [v * s for v in boxes[i]]
            # Masks that are more than the box's rectangle (REFLACX ellipses; not VinDr's boxes).
            polygons = [np.asarray(p, dtype=float).reshape(-1, 2) * s for p in annos[i].get("segmentation") or []
                        if isinstance(p, (list, tuple)) and len(p) > 8]
            for xy in polygons:
                canvas.polygon(xy, color, fill_alpha)
            canvas.box(drawn_box, color, dashed=bool(polygons))
        text = class_names[classes[group[0]]]
        who = sorted({aliases[r] for i in group for r in annos[i].get("readers") or () if r in aliases}, key=_natural)
        if who and name_readers:
            text += f" — reader{'s' if len(who) > 1 else ''} {', '.join(who)}"
        elif len(who) > 1:
            text += f" ({len(who)} readers)"
        union = [min(boxes[i][0] for i in group) * s, min(boxes[i][1] for i in group) * s,
                 max(boxes[i][2] for i in group) * s, max(boxes[i][3] for i in group) * s]
        requests.append((union[1], union[0], text, union, color))
    for _, _, text, box, color in sorted(requests, key=lambda r: (r[0], r[1])):
        canvas.label(text, box, color)
    if not annos and title is None:
        canvas.note("no lesion")
    lines = [title] if title else []
    if name_readers and any(alias != reader for reader, alias in aliases.items()):
        lines.append("readers: " + ", ".join(f"{alias} = {reader}" for reader, alias in aliases.items()))
    return finish_drawing(canvas, s, lines)


def render_predictions(
    image_rgb: np.ndarray,
    boxes_xyxy,
    scores: Sequence[float],
    classes: Sequence[int],
    class_names: Sequence[str],
    scale: float = 1.0,
    *,
    min_long_side: int = 0,
    title: Optional[str] = None,
) -> Drawing:
    """Draw predicted boxes with ``"<class> <score>"`` labels.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 RGB in the frame of the boxes.
        boxes_xyxy: ``(N, 4)`` float boxes, XYXY absolute source pixels.
        scores: ``N`` scores in [0, 1]; classes: ``N`` category ids into ``class_names``.
        scale, min_long_side, title: as in :func:`render_ground_truth`.

    Returns:
        :class:`Drawing`; labels are in drawn-image pixels.

    Raises:
        ValueError: for a non-RGB image, a non-positive ``scale`` or lengths that differ.
    """
    boxes = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"render_predictions: {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
    image, s = prepare_image(image_rgb, scale, min_long_side)
    canvas = Canvas(image, label_font_px(*image.shape[:2]))
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))  # best first: it gets the free spot
    for i in order:
        canvas.box(boxes[i] * s, class_color(classes[i], len(class_names)))
    for i in order:
        canvas.label(f"{class_names[int(classes[i])]} {float(scores[i]):.2f}", tuple(boxes[i] * s),
                     class_color(classes[i], len(class_names)))
    if not len(boxes) and title is None:
        canvas.note("no prediction")
    return finish_drawing(canvas, s, [title] if title else [])


def draw_ground_truth(image_rgb, record, class_names, show_readers=True, scale=1.0, **kwargs) -> np.ndarray:
    """:func:`render_ground_truth`'s image, ``(H', W', 3)`` uint8 RGB."""
    return render_ground_truth(image_rgb, record, class_names, show_readers, scale, **kwargs).image


def draw_predictions(image_rgb, boxes_xyxy, scores, classes, class_names, scale=1.0, **kwargs) -> np.ndarray:
    """:func:`render_predictions`'s image, ``(H', W', 3)`` uint8 RGB."""
    return render_predictions(image_rgb, boxes_xyxy, scores, classes, class_names, scale, **kwargs).image


def ground_truth_title(n_boxes: int) -> str:
    """Panel title of a ground-truth drawing: ``"Ground truth (3 boxes)"``."""
    return f"Ground truth ({n_boxes or 'no'} box{'' if n_boxes == 1 else 'es'})"


def predictions_title(n_boxes: int, score_threshold: Optional[float] = None) -> str:
    """Panel title of a predictions drawing: ``"Predictions, score ≥ 0.3 (5)"``."""
    shown = f", score ≥ {score_threshold:g}" if score_threshold is not None else ""
    return f"Predictions{shown} ({n_boxes})"
