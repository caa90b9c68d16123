"""Dataset mapper for chest X-rays: PNG/JPEG/DICOM in, albumentations + detectron2 augmentations."""
import copy
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from cxr_det.data.albumentations import apply_albumentations, build_albumentations
from cxr_det.data.clinical.pipeline import clinical_tensors, load_featurizer
from cxr_det.data.image_io import gray_to_format, read_gray, read_options_from_config

__all__ = ["CXRDatasetMapper", "GEOMETRIC_AUGMENTATIONS"]

#: detectron2 augmentations that move pixels without looking at their channels (those
#: ``detection_utils.build_augmentation`` and ``INPUT.CROP`` build): with only these, the
#: mapper augments the one gray channel and repeats it afterwards.
GEOMETRIC_AUGMENTATIONS = (T.ResizeShortestEdge, T.Resize, T.RandomFlip, T.RandomCrop)


class CXRDatasetMapper:
    """Turn a dataset dict into model inputs (``image`` CxHxW tensor, ``instances``).

    Reads grayscale X-rays (PNG, JPEG or DICOM) into ``INPUT.FORMAT``; in training applies
    the configured albumentations transforms to image, boxes and polygon masks together,
    then detectron2's augmentations (resize, flip), and converts the annotations with
    detectron2's own ``transform_instance_annotations`` / ``annotations_to_instances``.
    With a clinical featurizer, the raw ``clinical`` record becomes the model's tensors
    (``numeric``, ``missing``, ``categorical``); other keys pass through untouched.

    An X-ray is one gray channel repeated into ``INPUT.FORMAT``'s three: when no
    albumentations transform runs and every augmentation is geometric
    (:data:`GEOMETRIC_AUGMENTATIONS`), the gray image is augmented and then repeated, which
    gives the same tensor as augmenting the three copies (a third of the resizing work on a
    full-size radiograph; ``tools/benchmark.py`` measures it).
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations,
        image_format: str,
        albumentations=None,
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
        recompute_boxes: bool = False,
        clinical_featurizer=None,
        read_options=None,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.albumentations = albumentations
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.recompute_boxes = recompute_boxes
        self.clinical_featurizer = clinical_featurizer
        self.read_options = dict(read_options or {})
        self._gray_augmentation = all(isinstance(a, GEOMETRIC_AUGMENTATIONS) for a in augmentations)
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(
            f"[CXRDatasetMapper] {mode}: augmentations {augmentations}, albumentations {albumentations}"
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        augs = utils.build_augmentation(cfg, is_train)
        if cfg.INPUT.CROP.ENABLED and is_train:
            augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "albumentations": build_albumentations(cfg.CXR.INPUT.ALBUMENTATIONS) if is_train else None,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "recompute_boxes": cfg.MODEL.MASK_ON and cfg.INPUT.CROP.ENABLED and is_train,
            "clinical_featurizer": load_featurizer(cfg) if cfg.CXR.CLINICAL.ENABLED else None,
            "read_options": read_options_from_config(cfg),
        }

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        if self.clinical_featurizer is not None:
            dataset_dict["clinical"] = clinical_tensors(self.clinical_featurizer, dataset_dict.get("clinical"))
        gray = read_gray(dataset_dict["file_name"], **self.read_options)
        utils.check_image_size(dataset_dict, gray)
        annos = dataset_dict.pop("annotations", None)
        if not self.is_train:
            annos = None

        albumentations = annos is not None and self.albumentations is not None
        one_channel = self._gray_augmentation and not albumentations
        image = gray[:, :, None] if one_channel else gray_to_format(gray, self.image_format)
        if albumentations:
            annos = [_to_xyxy_abs(a) for a in annos if a.get("iscrowd", 0) == 0]
            image, annos = apply_albumentations(self.albumentations, image, annos)

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        if one_channel:
            image = gray_to_format(image[:, :, 0], self.image_format)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        dataset_dict["image"] = torch.as_tensor(chw if chw.flags.writeable else chw.copy())

        if annos is not None:
            if not self.use_instance_mask:
                for anno in annos:
                    anno.pop("segmentation", None)
            annos = [
                utils.transform_instance_annotations(obj, transforms, image_shape)
                for obj in annos
                if obj.get("iscrowd", 0) == 0
            ]
            instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.instance_mask_format)
            if self.recompute_boxes:
                instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
            dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict


def _to_xyxy_abs(anno):
    anno = dict(anno)
    anno["bbox"] = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
    anno["bbox_mode"] = BoxMode.XYXY_ABS
    return anno
