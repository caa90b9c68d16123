"""The canvas of a legible picture: drawing frame, label font, label layout, titles, panels.

What :mod:`cxr_det.utils.visualizer` draws (ground truth, predictions) goes on this canvas.
Shapes and text are drawn with matplotlib on detectron2's :class:`VisImage` canvas (Agg, no
pyplot).

- **Drawing frame.** An image whose long side is under ``min_long_side`` is upscaled (bicubic)
  before drawing, so a 256-pixel cache image is not drawn at 256 pixels; boxes and masks are
  scaled with it. ``Drawing.scale`` maps source pixels to drawn pixels.
- **Font from the image, not the box.** One label height per picture, a fraction of the drawn
  long side (:func:`label_font_px`), so a tiny nodule and a large effusion get the same text.
- **Labels inside the image and apart.** Each label goes above its box, else inside its top,
  else below it, shifted into the image; a label that would cover an earlier one slides down
  (or up) until free and gets a leader line to its box.
- **Titles.** An optional strip above the image (:func:`title_strip`); panels are put side
  by side on the same dark background (:func:`side_by_side`).
"""
import textwrap
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon, Rectangle

from detectron2.utils.visualizer import VisImage

__all__ = [
    "MIN_LONG_SIDE",
    "TITLE_BACKGROUND",
    "DrawnLabel",
    "Drawing",
    "Canvas",
    "drawing_scale",
    "label_font_px",
    "class_color",
    "title_strip",
    "prepare_image",
    "finish_drawing",
    "side_by_side",
]

MIN_LONG_SIDE = 1024  # drawn pixels on the long side the tools draw at least
FONT_FRACTION = 1 / 56  # label font height / drawn long side (18 px at 1024)
MIN_FONT_PX = 12
MAX_BOX_COVER = 0.3  # a label may hide at most this fraction of its box when there is a choice
TITLE_BACKGROUND = 24  # grey level of the title strip and of the gap between panels


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


def class_color(class_id: int, num_classes: int) -> Tuple[float, float, float]:
    """The RGB colour (floats in [0, 1]) of a class: tab10, or tab20 past 10 classes."""
    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return tuple(cmap(int(class_id) % cmap.N)[:3])


def _text_color(background) -> str:
    r, g, b = background
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


class Canvas:
    """A VisImage with the fixed font, line width and label layout of one picture.

    ``image_rgb`` is ``(H, W, 3)`` uint8 RGB, ``font_px`` the label font height in pixels.
    Coordinates of :meth:`box`, :meth:`polygon` and :meth:`label` are drawn-image pixels
    (XYXY for boxes); labels are placed inside the image and apart (the module's docstring).
    """

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
        """An outline of ``box`` (XYXY drawn pixels) in ``color`` (RGB in [0, 1]); dashed for a mask's box."""
        x0, y0, x1, y1 = box
        self.ax.add_patch(Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
            linewidth=self._lw(self.line_px * (0.7 if dashed else 1.0)), linestyle="--" if dashed else "-",
            alpha=0.8 if dashed else 0.95,
        ))

    def polygon(self, xy: np.ndarray, color, fill_alpha=0.15):
        """A closed polygon, ``xy`` ``(K, 2)`` drawn pixels, filled at opacity ``fill_alpha`` in [0, 1]."""
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
        """The drawn picture, ``(H, W, 3)`` uint8 RGB."""
        return self.vis.get_image()


def title_strip(lines: Sequence[str], width: int, font_px: float) -> np.ndarray:
    """A dark strip ``(h, width, 3)`` uint8 RGB holding ``lines`` (the first bold), wrapped to the width."""
    strip = np.full((1, width, 3), TITLE_BACKGROUND, dtype=np.uint8)
    canvas = Canvas(strip, font_px)
    chars = max(20, int(width / (0.55 * font_px)))
    wrapped = [part for line in lines for part in (textwrap.wrap(line, chars) or [""])]
    line_h = canvas.line_height * 1.25
    height = int(np.ceil(len(wrapped) * line_h + 2 * canvas.pad))
    canvas = Canvas(np.full((height, width, 3), TITLE_BACKGROUND, dtype=np.uint8), font_px)
    for i, line in enumerate(wrapped):
        canvas.ax.text(canvas.pad * 2, canvas.pad + i * line_h, line, fontsize=canvas.points,
                       color="white" if i == 0 else "#d0d0d0", va="top", ha="left",
                       fontweight="bold" if i == 0 else "normal")
    return canvas.image()


def prepare_image(image_rgb: np.ndarray, scale: float, min_long_side: int):
    """``(image in the drawing frame, scale)``: ``image_rgb`` resized by :func:`drawing_scale`
    (bicubic up, area down), contiguous uint8.

    Raises:
        ValueError: for an image that is not ``(H, W, 3)`` or a non-positive ``scale``.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image_rgb.shape}")
    h, w = image_rgb.shape[:2]
    s = drawing_scale(h, w, scale, min_long_side)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    if size != (w, h):
        interp = cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
        image_rgb = cv2.resize(image_rgb, size, interpolation=interp)
    return np.ascontiguousarray(image_rgb, dtype=np.uint8), s


def finish_drawing(canvas: Canvas, s: float, title_lines: Sequence[str]) -> Drawing:
    """The :class:`Drawing` of ``canvas`` drawn at scale ``s``, with a title strip of
    ``title_lines`` above it when there are any."""
    drawn = canvas.image()
    title_height = 0
    if title_lines:
        strip = title_strip(title_lines, drawn.shape[1], canvas.font_px)
        title_height = strip.shape[0]
        drawn = np.concatenate([strip, drawn])
    return Drawing(drawn, s, canvas.font_px, title_height, canvas.labels)


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
