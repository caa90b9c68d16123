"""Drawings of chest X-ray ground truth and predictions that a reader can read.

Shapes and text are drawn with matplotlib on detectron2's :class:`VisImage` canvas (Agg, no
pyplot). What makes a picture legible:

- **Drawing frame.** An image whose long side is under ``min_long_side`` is upscaled (bicubic)
  before drawing, so a 256-pixel cache image is not drawn at 256 pixels; boxes and masks are
  scaled with it. ``Drawing.scale`` maps source pixels to drawn pixels.
- **Font from the image, not the box.** One label height per picture, a fraction of the drawn
  long side (:func:`label_font_px`), so a tiny nodule and a large effusion get the same text.
- **Labels inside the image and apart.** Each label goes above its box, else inside its top,
  else below it, shifted into the image; a label that would cover an earlier one slides down
  (or up) until free and gets a leader line to its box.
- **Readers merged.** Ground-truth boxes of one class from several readers that overlap at
  IoU >= ``merge_iou`` (the PASCAL match criterion, :data:`MERGE_IOU`) share one label naming
  the readers ("Atelectasis — readers R1, R3"); every reader's outline is still drawn.
- **Titles.** An optional strip above the image ("Ground truth (6 boxes)"), which also carries
  the key of reader aliases when reader ids are long (REFLACX reading ids).
"""
import re
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon, Rectangle

from detectron2.structures import BoxMode
from detectron2.utils.visualizer import VisImage

from cxr_det.data.datasets.vindr import CONSENSUS_READER
from cxr_det.utils.boxes import box_iou
from cxr_det.data.image_io import read_image

__all__ = [
    "MIN_LONG_SIDE",
    "MERGE_IOU",
    "DrawnLabel",
    "Drawing",
    "load_rgb",
    "drawing_scale",
    "label_font_px",
    "reader_aliases",
    "render_ground_truth",
    "render_predictions",
    "draw_ground_truth",
    "draw_predictions",
    "ground_truth_title",
    "predictions_title",
    "side_by_side",
]

MIN_LONG_SIDE = 1024  # drawn pixels on the long side the tools draw at least
MERGE_IOU = 0.5  # same-class boxes of different readers at this IoU share a label
FONT_FRACTION = 1 / 56  # label font height / drawn long side (18 px at 1024)
MIN_FONT_PX = 12
MAX_BOX_COVER = 0.3  # a label may hide at most this fraction of its box when there is a choice
FILL_ALPHA = 0.2  # opacity of a mask fill where all readers of a merged group overlap
TITLE_BACKGROUND = 24  # grey level of the title strip and of the gap between panels
_SHORT_READER = re.compile(r"^[A-Za-z]{0,3}\d{1,3}$")  # VinDr rad_ids: R1..R17


@dataclass(frozen=True)
class DrawnLabel:
    """One label as drawn.

    ``rect`` is the label's background rectangle and ``box`` the instance box it names, both
    XYXY in drawn-image pixels (the frame below the title strip: add ``Drawing.title_height``
    to the rows to index ``Drawing.image``).
    """

    text: str
    rect: Tuple[float, float, float, float]
    box: Tuple[float, float, float, float]


@dataclass
class Drawing:
    """A picture and where its parts went.

    Attributes:
        image: ``(title_height + H', W', 3)`` uint8 RGB, the title strip (if any) above the drawn
            image, ``H' = round(H * scale)``, ``W' = round(W * scale)``.
        scale: drawn pixels per source-image pixel.
        font_px: nominal label font height in drawn pixels.
        title_height: rows of the title strip (0 without a title).
        labels: the labels in drawing order.
    """

    image: np.ndarray
    scale: float
    font_px: float
    title_height: int = 0
    labels: List[DrawnLabel] = field(default_factory=list)


def load_rgb(file_name) -> np.ndarray:
    """An image file (PNG/JPEG/DICOM) as ``(H, W, 3)`` uint8 RGB; DICOMs display-corrected."""
    return read_image(file_name, "RGB")


def drawing_scale(height: int, width: int, scale: float = 1.0, min_long_side: int = MIN_LONG_SIDE) -> float:
    """Drawn pixels per source pixel: ``scale`` times the upscaling that brings the long side to
    at least ``min_long_side`` (1 for images already that large; ``min_long_side`` 0: none).

    Raises:
        ValueError: for a non-positive ``scale`` or image size.
    """
    if scale <= 0 or height <= 0 or width <= 0:
        raise ValueError(f"drawing_scale: need a positive scale and image size, got {scale} and {height}x{width}")
    return float(scale) * max(1.0, min_long_side / max(height, width))


def label_font_px(height: int, width: int) -> float:
    """Label font height in pixels for a drawn image of ``height`` x ``width`` pixels:
    ``FONT_FRACTION`` of the long side, at least ``MIN_FONT_PX``. Independent of any box."""
    return max(float(MIN_FONT_PX), round(max(height, width) * FONT_FRACTION, 1))


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


def _class_color(class_id: int, num_classes: int) -> Tuple[float, float, float]:
    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return tuple(cmap(int(class_id) % cmap.N)[:3])


def _text_color(background) -> str:
    r, g, b = background
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


class _Canvas:
    """A VisImage with the fixed font, line width and label layout of one picture."""

    def __init__(self, image_rgb: np.ndarray, font_px: float):
        self.vis = VisImage(image_rgb)
        self.ax = self.vis.ax
        self.height, self.width = image_rgb.shape[:2]
        self.font_px = font_px
        self.points = font_px * 72.0 / self.vis.dpi  # matplotlib font sizes are in points
        self.pad = max(2.0, round(font_px * 0.25))
        self.line_px = max(1.5, font_px / 8)
        self.renderer = self.vis.canvas.get_renderer()
        self.line_height = self._extent("Ag")[1]
        self.placed: List[Tuple[float, float, float, float]] = []
        self.labels: List[DrawnLabel] = []

    def _extent(self, text: str) -> Tuple[float, float]:
        probe = self.ax.text(0, 0, text, fontsize=self.points)
        bbox = probe.get_window_extent(renderer=self.renderer)
        probe.remove()
        return bbox.width, bbox.height

    def _lw(self, px: float) -> float:
        return px * 72.0 / self.vis.dpi

    def box(self, box, color, dashed=False):
        x0, y0, x1, y1 = box
        self.ax.add_patch(Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
            linewidth=self._lw(self.line_px * (0.7 if dashed else 1.0)), linestyle="--" if dashed else "-",
            alpha=0.8 if dashed else 0.95,
        ))

    def polygon(self, xy: np.ndarray, color, fill_alpha=0.15):
        self.ax.add_patch(Polygon(xy, closed=True, facecolor=(*color, fill_alpha), edgecolor=(*color, 0.95),
                                  linewidth=self._lw(self.line_px)))

    def _free(self, rect) -> bool:
        x0, y0, x1, y1 = rect
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in self.placed)

    def _inside(self, x, y, w, h):
        x = min(max(x, 0.0), max(self.width - w, 0.0))
        y = min(max(y, 0.0), max(self.height - h, 0.0))
        return (x, y, x + w, y + h)

    @staticmethod
    def _covers(rect, box) -> float:
        """Fraction of ``box`` hidden under ``rect``."""
        iw = min(rect[2], box[2]) - max(rect[0], box[0])
        ih = min(rect[3], box[3]) - max(rect[1], box[1])
        area = max(box[2] - box[0], 1e-6) * max(box[3] - box[1], 1e-6)
        return max(iw, 0.0) * max(ih, 0.0) / area

    def _place(self, w: float, h: float, box) -> Tuple[float, float, float, float]:
        x0, y0, _, y1 = box
        candidates = [self._inside(x0, y, w, h) for y in (y0 - h, y0, y1)]
        # A free spot that leaves most of the box visible; then any free spot.
        for rect in [c for c in candidates if self._covers(c, box) <= MAX_BOX_COVER] + candidates:
            if self._free(rect):
                return rect
        step = h / 2
        first = candidates[0]
        for direction in (1, -1):
            y = first[1]
            while 0 <= y <= self.height - h:
                rect = self._inside(first[0], y, w, h)
                if self._free(rect):
                    return rect
                y += direction * step
        return first

    def label(self, text: str, box, color):
        """A label of ``text`` for ``box`` (XYXY drawn pixels) on a ``color`` background."""
        tw, _ = self._extent(text)
        w, h = tw + 2 * self.pad, self.line_height + 2 * self.pad
        rect = self._place(w, h, box)
        self.placed.append(rect)
        x0, y0, x1, y1 = rect
        self._leader(rect, box, color)
        self.ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=color, edgecolor="none", alpha=0.9))
        self.ax.text(x0 + self.pad, y0 + self.pad, text, fontsize=self.points, color=_text_color(color),
                     va="top", ha="left")
        self.labels.append(DrawnLabel(text, tuple(float(v) for v in rect), tuple(float(v) for v in box)))

    def _leader(self, rect, box, color):
        cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
        bx, by = min(max(cx, box[0]), box[2]), min(max(cy, box[1]), box[3])
        rx, ry = min(max(bx, rect[0]), rect[2]), min(max(by, rect[1]), rect[3])
        if np.hypot(bx - rx, by - ry) > 2 * self.pad:
            self.ax.add_line(Line2D([rx, bx], [ry, by], color=color, linewidth=self._lw(self.line_px * 0.7)))

    def note(self, text: str):
        """A message centred at the top of the image (e.g. "no lesion"); not a label of a box."""
        x = (self.width - self._extent(text)[0]) / 2 - self.pad
        y = self.line_height * 2
        self.label(text, (x, y, x + 1, y), (0.1, 0.1, 0.1))
        self.labels.pop()

    def image(self) -> np.ndarray:
        return self.vis.get_image()


def _title_strip(lines: Sequence[str], width: int, font_px: float) -> np.ndarray:
    strip = np.full((1, width, 3), TITLE_BACKGROUND, dtype=np.uint8)
    canvas = _Canvas(strip, font_px)
    chars = max(20, int(width / (0.55 * font_px)))
    wrapped = [part for line in lines for part in (textwrap.wrap(line, chars) or [""])]
    line_h = canvas.line_height * 1.25
    height = int(np.ceil(len(wrapped) * line_h + 2 * canvas.pad))
    canvas = _Canvas(np.full((height, width, 3), TITLE_BACKGROUND, dtype=np.uint8), font_px)
    for i, line in enumerate(wrapped):
        canvas.ax.text(canvas.pad * 2, canvas.pad + i * line_h, line, fontsize=canvas.points,
                       color="white" if i == 0 else "#d0d0d0", va="top", ha="left",
                       fontweight="bold" if i == 0 else "normal")
    return canvas.image()


def _prepare(image_rgb: np.ndarray, scale: float, min_long_side: int):
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    s = drawing_scale(h, w, scale, min_long_side)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    if size != (w, h):
        interp = cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
        image_rgb = cv2.resize(image_rgb, size, interpolation=interp)
    return np.ascontiguousarray(image_rgb, dtype=np.uint8), s


def _finish(canvas: _Canvas, s: float, title_lines: Sequence[str]) -> Drawing:
    drawn = canvas.image()
    title_height = 0
    if title_lines:
        strip = _title_strip(title_lines, drawn.shape[1], canvas.font_px)
        title_height = strip.shape[0]
        drawn = np.concatenate([strip, drawn])
    return Drawing(drawn, s, canvas.font_px, title_height, canvas.labels)


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
    image, s = _prepare(image_rgb, scale, min_long_side)
    canvas = _Canvas(image, label_font_px(*image.shape[:2]))
    annos = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    aliases = reader_aliases(record)
    name_readers = show_readers and len(aliases) > 1
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    classes = [int(a["category_id"]) for a in annos]
    groups = _reader_groups(boxes, classes, merge_iou)
    requests = []
    for group in groups:
        color = _class_color(classes[group[0]], len(class_names))
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
    return _finish(canvas, s, lines)


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
    image, s = _prepare(image_rgb, scale, min_long_side)
    canvas = _Canvas(image, label_font_px(*image.shape[:2]))
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))  # best first: it gets the free spot
    for i in order:
        canvas.box(boxes[i] * s, _class_color(classes[i], len(class_names)))
    for i in order:
        canvas.label(f"{class_names[int(classes[i])]} {float(scores[i]):.2f}", tuple(boxes[i] * s),
                     _class_color(classes[i], len(class_names)))
    if not len(boxes) and title is None:
        canvas.note("no prediction")
    return _finish(canvas, s, [title] if title else [])


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


def side_by_side(*images: np.ndarray, gap: int = 8) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB images side by side, padded at the bottom to the tallest, with a
    ``gap``-pixel dark column between them."""
    height = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        pad = np.full((height - im.shape[0], im.shape[1], 3), TITLE_BACKGROUND, dtype=np.uint8)
        parts.append(np.concatenate([im, pad]) if len(pad) else im)
        if i < len(images) - 1:
            parts.append(np.full((height, gap, 3), TITLE_BACKGROUND, dtype=np.uint8))
    return np.concatenate(parts, axis=1)
