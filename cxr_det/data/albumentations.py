"""albumentations transforms from the config, applied to image, boxes and masks together.

``CXR.INPUT.ALBUMENTATIONS`` is a list of ``{"name": <albumentations class>, <kwarg>: value}``.
Boxes and polygon masks travel through the pipeline as keypoints (the polygon vertices, or
the four box corners when an annotation has no polygon), so every geometric transform
moves them exactly as it moves the pixels; the box is then re-derived from the moved
points and the polygon is clipped to the image.
"""
import warnings

import albumentations as A
import numpy as np

from cxr_det.data.ellipse import clip_polygon_to_image


def build_albumentations(specs):
    """An ``A.Compose`` from the config list, or None when the list is empty."""
    if not specs:
        return None
    transforms = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("name", None)
        cls = getattr(A, name, None) if isinstance(name, str) else None
        if cls is None or not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise ValueError(
                f"CXR.INPUT.ALBUMENTATIONS[{i}]: {name!r} is not an albumentations transform "
                f"(each entry needs 'name', e.g. {{'name': 'RandomBrightnessContrast', 'p': 0.5}})"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                transforms.append(cls(**spec))
            except (TypeError, ValueError) as e:
                raise ValueError(f"CXR.INPUT.ALBUMENTATIONS[{i}] ({name}): {e}") from e
        for w in caught:
            if "not valid" in str(w.message):
                raise ValueError(f"CXR.INPUT.ALBUMENTATIONS[{i}] ({name}): {w.message}")
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return A.Compose(transforms, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))


def _points(anno):
    seg = anno.get("segmentation")
    if isinstance(seg, list) and seg:
        return [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in seg]
    x0, y0, x1, y1 = anno["bbox"]
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)]


def apply_albumentations(transform, image, annotations):
    """Apply ``transform`` to an HxWxC image and XYXY_ABS annotations (with polygon masks).

    Returns the new image and annotations; annotations whose shape leaves the image are
    dropped (their polygon is empty after clipping).
    """
    pieces, owners = [], []
    for i, anno in enumerate(annotations):
        for poly in _points(anno):
            pieces.append(poly)
            owners.append(i)
    keypoints = np.concatenate(pieces) if pieces else np.zeros((0, 2), np.float32)
    out = transform(image=image, keypoints=keypoints)
    image = out["image"]
    height, width = image.shape[:2]
    moved = np.asarray(out["keypoints"], dtype=np.float32).reshape(-1, 2)

    polygons = [[] for _ in annotations]
    start = 0
    for poly, owner in zip(pieces, owners):
        points = moved[start : start + len(poly)]
        start += len(poly)
        clipped = clip_polygon_to_image(points.reshape(-1).tolist(), width, height)
        if len(clipped) >= 6:
            polygons[owner].append(clipped)

    result = []
    for anno, polys in zip(annotations, polygons):
        if not polys:
            continue
        xy = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polys])
        anno = dict(anno)
        anno["bbox"] = [float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())]
        if anno.get("segmentation"):
            anno["segmentation"] = polys
        result.append(anno)
    return image, result
