"""Drawings of chest X-ray ground truth and predictions with detectron2's Visualizer."""
import numpy as np

from detectron2.structures import BoxMode
from detectron2.utils.visualizer import ColorMode, Visualizer

from cxr_det.data.image_io import read_image


def _colors(class_ids, num_classes):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
    return [cmap(c % cmap.N)[:3] for c in class_ids]


def load_rgb(file_name):
    """An image file (PNG/JPEG/DICOM) as uint8 RGB."""
    return read_image(file_name, "RGB")


def draw_ground_truth(image_rgb, record, class_names, show_readers=True, scale=1.0):
    """Boxes, polygon/ellipse masks, class names and reader ids of a dataset dict."""
    annos = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    vis = Visualizer(image_rgb, scale=scale, instance_mode=ColorMode.IMAGE)
    if not annos:
        vis.draw_text("no lesion", (image_rgb.shape[1] / 2, 12), color="w", font_size=12)
        return vis.get_output().get_image()
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    labels = []
    for a in annos:
        label = class_names[a["category_id"]]
        if show_readers and a.get("readers"):
            readers = a["readers"]
            label += f" [{readers[0]}{f' +{len(readers) - 1}' if len(readers) > 1 else ''}]"
        labels.append(label)
    masks = [a["segmentation"] for a in annos] if all(a.get("segmentation") for a in annos) else None
    vis.overlay_instances(
        boxes=np.asarray(boxes),
        labels=labels,
        masks=masks,
        assigned_colors=_colors([a["category_id"] for a in annos], len(class_names)),
        alpha=0.25,
    )
    return vis.get_output().get_image()


def draw_predictions(image_rgb, boxes_xyxy, scores, classes, class_names, scale=1.0):
    """Predicted boxes with ``class score`` labels."""
    vis = Visualizer(image_rgb, scale=scale, instance_mode=ColorMode.IMAGE)
    if len(boxes_xyxy) == 0:
        vis.draw_text("no prediction", (image_rgb.shape[1] / 2, 12), color="w", font_size=12)
        return vis.get_output().get_image()
    labels = [f"{class_names[c]} {s:.2f}" for c, s in zip(classes, scores)]
    vis.overlay_instances(
        boxes=np.asarray(boxes_xyxy),
        labels=labels,
        assigned_colors=_colors(classes, len(class_names)),
        alpha=0.25,
    )
    return vis.get_output().get_image()


def side_by_side(*images, gap=8):
    """Concatenate RGB images horizontally (padded to the tallest) with a dark gap."""
    height = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        pad = np.zeros((height - im.shape[0], im.shape[1], 3), dtype=np.uint8)
        parts.append(np.concatenate([im, pad]) if len(pad) else im)
        if i < len(images) - 1:
            parts.append(np.full((height, gap, 3), 32, dtype=np.uint8))
    return np.concatenate(parts, axis=1)
