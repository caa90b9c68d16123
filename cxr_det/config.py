"""Every config key of cxr_det, defined once, with its meaning in a comment beside it.

Where keys go: everything cxr_det adds to detectron2's config lives under ``cfg.CXR``, except
the evaluator's options, which sit with detectron2's own test options under
``cfg.TEST.CXR_EVAL``. One ``add_*_config`` function per group, all in this module:

====================================  =========================================================
``add_dataset_config``                ``CXR.DATASET_ROOT``, ``CXR.REFLACX``, ``CXR.VINDR``:
                                      which files, classes and reader mode a dataset name means
``add_input_config``                  ``CXR.INPUT``: how pixels are read and augmented
``add_mobilenet_config``              ``CXR.MOBILENET``: the MobileNetV3 backbone
``add_clinical_config``               ``CXR.CLINICAL``: the clinical record and its features
``add_fusion_config``                 ``CXR.FUSION``: how the clinical vector meets the image
``add_training_control_config``       ``CXR.TRAIN``: validation loss, best checkpoint, early
                                      stop, plateau schedule, curves; ``CXR.SOLVER``: optimizer
``add_cxr_eval_config``               ``TEST.CXR_EVAL``: the chest X-ray evaluation protocols
``add_classification_config``         ``CXR.CLASSIFIER``: image-level classifiers (backbone,
                                      pooling, head, loss, imbalance) and
                                      ``TEST.CXR_CLS_EVAL``: their evaluation
====================================  =========================================================

:func:`add_cxr_config` calls them all. A new key goes into the function of its group, with a
comment saying what it does, its unit and range; an evaluation option goes into the table
:data:`CXR_EVAL_OPTIONS` instead (it becomes the ``TEST.CXR_EVAL`` key, the field of
``cxr_det.evaluation.EvalOptions`` and the ``tools/evaluate.py`` flag). This module imports detectron2's config and
:mod:`cxr_det.formats` (constants only) and nothing else, so reading or writing a config never
loads the data, model or evaluation code. Adapting a config to the machine it runs on (CPU,
no pretrained weights) is not done here: see :func:`cxr_det.engine.defaults.adapt_to_machine`.
"""
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from cxr_det.formats.mimic_iv_ed_format import MDF_NET_CLINICAL_CATEGORICAL, MDF_NET_CLINICAL_NUMERIC
from cxr_det.formats.reflacx_format import MDF_NET_CLASSES
from cxr_det.formats.vindr_format import VINDR_KAGGLE_CLASSES

__all__ = [
    "add_cxr_config",
    "add_dataset_config",
    "add_input_config",
    "add_mobilenet_config",
    "add_clinical_config",
    "add_fusion_config",
    "add_training_control_config",
    "add_cxr_eval_config",
    "add_classification_config",
    "get_cxr_cfg",
    "CLASSIFICATION_TASKS",
    "CLASSIFICATION_LOSSES",
    "TORCHVISION_CLASSIFIERS",
    "CLINICAL_NUMERIC",
    "CLINICAL_CATEGORICAL",
    "CXR_EVAL_PROTOCOLS",
    "FROC_FPS",
    "CXR_EVAL_OPTIONS",
]

# Default clinical features (MDF-Net's: age, the MIMIC-IV-ED triage vitals and acuity; gender).
CLINICAL_NUMERIC = MDF_NET_CLINICAL_NUMERIC
CLINICAL_CATEGORICAL = MDF_NET_CLINICAL_CATEGORICAL
# The evaluation protocols of cxr_det.evaluation, in the order they run and report.
CXR_EVAL_PROTOCOLS = ("coco", "vinbigdata", "iobb", "froc", "image")
# False positives per image at which FROC sensitivity is read (the LUNA16 / CAMELYON16 points).
FROC_FPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# Image-level tasks: "multi_label" (C independent labels, sigmoid) or "single_label" (one of C
# classes, softmax; binary = 2 classes).
CLASSIFICATION_TASKS = ("multi_label", "single_label")
# Losses of the classification head (CXR.CLASSIFIER.LOSS).
CLASSIFICATION_LOSSES = ("auto", "bce", "ce", "focal")
# torchvision classifiers usable as backbones (CXR.CLASSIFIER.TORCHVISION.ARCH).
TORCHVISION_CLASSIFIERS = ("densenet121", "resnet18", "resnet34", "resnet50", "efficientnet_b0",
                           "mobilenet_v3_small", "mobilenet_v3_large")
# Every option of the evaluation, defined once. Each entry becomes the config key
# TEST.CXR_EVAL.<NAME> (add_cxr_eval_config), the field <name> of
# cxr_det.evaluation.EvalOptions (which checks values against this table), and the
# tools/evaluate.py flag --<name-with-dashes>. Fields of an entry:
#   name      the option's name (lower case); the key is its upper case
#   protocol  the protocol that reads it (one of CXR_EVAL_PROTOCOLS), None for all of them
#   default   its value when not set (a tuple for a list option)
#   type      "float", "int", "str" or "bool"; many=True: a list of them
#   choices   the allowed values of a "str" option (or of each item of a list)
#   minimum   the least allowed value of a number; none_below=n: values below n mean None
#   help      what it does, its unit and range (the key's documentation and the flag's help)
#   flag      (tools/evaluate.py) a flag spelled otherwise: "--no-<name>" turns a bool off;
#             with flag_choices={word: value} the flag takes the words
#   flag_default  (tools/evaluate.py) a default other than the config's
CXR_EVAL_OPTIONS = (
    dict(name="protocols", protocol=None, default=CXR_EVAL_PROTOCOLS, type="str", many=True,
         choices=CXR_EVAL_PROTOCOLS,
         help='Protocols to compute: "coco" (AP, AP50, AP75, APs/m/l, per-class AP and AP50; bbox, '
              'and segm when the model predicts masks), "vinbigdata" (Kaggle VOC mAP with "No finding"), '
              '"iobb" (MDF-Net AP/AR with intersection over predicted box), "froc" (sensitivity at FPs '
              'per image), "image" (image-level AUC, AP, F1/F2 per class and for any abnormality).'),
    dict(name="vinbigdata_iou", protocol="vinbigdata", default=0.4, type="float", minimum=0.0,
         help="VinBigData: a prediction matches a GT box of its class when IoU is strictly above this."),
    dict(name="vinbigdata_matching", protocol="vinbigdata", default="voc", type="str", choices=("voc", "greedy"),
         help='VinBigData matching: "voc" (the PASCAL VOC devkit\'s, as the Kaggle metric and the map-boxes '
              "package: a detection whose best-IoU GT box is taken is a false positive) or \"greedy\" (it "
              "takes the best still-free GT box instead; not the reference, higher with overlapping "
              "readers' boxes)."),
    dict(name="iobb_threshold", protocol="iobb", default=0.5, type="float", minimum=0.0,
         help="MDF-Net: a prediction matches when intersection / (predicted box area) >= this."),
    dict(name="iobb_max_dets", protocol="iobb", default=10, type="int", none_below=1,
         help="MDF-Net: predictions kept per image and class, by score (their COCOeval used 10); 0 keeps all."),
    dict(name="froc_fps", protocol="froc", default=FROC_FPS, type="float", many=True, minimum=0.0,
         help="FROC: false positives per image at which lesion sensitivity is read; CPM is their mean."),
    dict(name="froc_criterion", protocol="froc", default="iou", type="str", choices=("iou", "center"),
         help='FROC hit criterion: "iou" (IoU >= FROC_IOU) or "center" (predicted box centre inside the GT box).'),
    dict(name="froc_iou", protocol="froc", default=0.3, type="float", minimum=0.0,
         help="FROC IoU for a hit. 0.3 rather than 0.5: lesion extents on radiographs are vague and readers "
              "disagree on them, and FROC asks whether the lesion was found, not how tightly boxed."),
    dict(name="froc_rule", protocol="froc", default="one_to_one", type="str", choices=("one_to_one", "luna16"),
         help='FROC duplicates: "one_to_one" (a second hit of an already found lesion is a false positive) '
              'or "luna16" (the LUNA16 / CAMELYON16 rule, as MONAI\'s FROC: it is ignored).'),
    dict(name="image_thresholds", protocol="image", default=(0.5,), type="float", many=True,
         help="Image-level decision thresholds on the image score (highest box score of the class): one "
              'value for all, one per class, or one per class followed by one for "any".'),
    dict(name="plots", protocol=None, default=True, type="bool", flag="--no-plots",
         help="Write PNG curves (precision-recall, FROC, ROC) next to metrics.json (--no-plots: skip them)."),
    dict(name="use_faster_coco_eval", protocol="coco", default=True, type="bool",
         flag="--coco-backend", flag_choices={"faster": True, "pycocotools": False},
         help="Run COCOeval through faster-coco-eval when installed (same numbers, faster); else pycocotools."),
    dict(name="bootstrap", protocol=None, default=0, type="int", minimum=0, flag_default=1000,
         help="Bootstrap resamples of the images for 95% confidence intervals of AP50, mAP@0.4, CPM and AUC "
              "(a \"bootstrap\" results table); 0 = off, as during training (tools/evaluate.py: 1000)."),
    dict(name="bootstrap_seed", protocol=None, default=0, type="int",
         help="Seed of the bootstrap resampling (same seed, same intervals)."),
)


def add_cxr_config(cfg):
    """Add every key of cxr_det to a detectron2 config (``get_cfg()``); call before
    ``merge_from_file``. Returns ``cfg``; every cxr_det key is (re)set to its default."""
    cfg.CXR = CN()
    add_dataset_config(cfg)
    add_input_config(cfg)
    add_mobilenet_config(cfg)
    add_clinical_config(cfg)
    add_fusion_config(cfg)
    add_training_control_config(cfg)
    add_cxr_eval_config(cfg)
    add_classification_config(cfg)
    return cfg


def add_dataset_config(cfg):
    """``CXR.DATASET_ROOT``, ``CXR.REFLACX``, ``CXR.VINDR``: what a registered dataset name reads."""
    _C = cfg
    # Root holding reflacx/, mimic-cxr-jpg/, vindr-cxr/ ... as shipped. Empty: $CXR_DATASETS, else ./datasets.
    _C.CXR.DATASET_ROOT = ""

    _C.CXR.REFLACX = CN()
    # Lesion labels to detect (phase-2/3 names; phase-1 names are mapped). ["all"]: every lesion label.
    _C.CXR.REFLACX.CLASSES = list(MDF_NET_CLASSES)
    # Reader mode (cxr_det.formats.READER_MODES): "all_readers": a record per image with every
    # reading's ellipses (MDF-Net); "per_reading": a record per reading; "mean_ellipse": a record
    # per image, overlapping same-class ellipses of different readings merged into their mean.
    # The earlier names "pooled", "reading", "fused" still work, with a DeprecationWarning.
    _C.CXR.REFLACX.READERS = "all_readers"
    # In "mean_ellipse" mode, same-class ellipses of different readings whose boxes overlap by
    # at least this IoU are merged into one.
    _C.CXR.REFLACX.FUSE_IOU = 0.3
    # Keep ellipses whose certainty is at least this: 1 Unlikely, 2 Less likely, 3 Possibly,
    # 4 Suspicious for / Probably, 5 Consistent with; 0 keeps all. Default 0 as MDF-Net (every
    # ellipse, whatever its certainty); the REFLACX authors count >= 3 ("Possibly") as present.
    # Annotations per certainty are logged at the first load of each registered split.
    _C.CXR.REFLACX.MIN_CERTAINTY = 0
    # Drop readings whose eye-tracking data was discarded (their ellipses are valid).
    _C.CXR.REFLACX.DROP_DISCARDED_EYE_TRACKING = False
    # Image source: "jpg" (MIMIC-CXR-JPG), "dicom" (MIMIC-CXR), "auto" (JPG if present, else DICOM).
    _C.CXR.REFLACX.IMAGE_SOURCE = "auto"

    _C.CXR.VINDR = CN()
    # Lesion classes (VinDr class names); default the 14 Kaggle lesion classes.
    _C.CXR.VINDR.CLASSES = list(VINDR_KAGGLE_CLASSES)
    # Reader mode (cxr_det.formats.READER_MODES): "all_readers": every radiologist's boxes;
    # "weighted_boxes_fusion": per class, boxes of different radiologists fused (a
    # radiologist's own boxes are never merged); or one rad_id, e.g. "R9". The earlier "all"
    # and "fused" still work, with a DeprecationWarning. In every mode exact duplicate rows
    # are dropped and counted.
    _C.CXR.VINDR.READERS = "all_readers"
    # IoU above which boxes of the same class by different radiologists are fused in
    # "weighted_boxes_fusion" mode.
    _C.CXR.VINDR.FUSE_IOU = 0.5
    # Folder written by tools/prepare_vindr.py (8-bit PNGs and their scales); empty: decode the DICOMs.
    _C.CXR.VINDR.IMAGE_CACHE = ""
    # Fraction of the labelled training images held out as "val" (by a hash of image_id).
    _C.CXR.VINDR.VAL_FRACTION = 0.2

    # Image-level label datasets (classification). Registered names: chexpert_{train,val,valid,all},
    # mimic_cxr_{train,val,test,all}, vindr_labels_{train,val,test,all}, folder_{train,val,test,all}.
    _C.CXR.CHEXPERT = CN()
    # Observations to predict: "competition5", "seed12", "all14", or a list of CheXpert names.
    _C.CXR.CHEXPERT.LABELS = ["competition5"]
    # Uncertainty policy for the uncertain (-1.0) cells: "zeros" (U-Zeros), "ones" (U-Ones) or
    # "ignore" (U-Ignore: weight 0, out of the loss and the metrics). Blank cells are negatives.
    _C.CXR.CHEXPERT.UNCERTAINTY = "zeros"
    # Per-label exceptions to UNCERTAINTY, "<label>:<policy>", e.g. ["Atelectasis:ones", "Edema:ones"].
    _C.CXR.CHEXPERT.UNCERTAINTY_BY_LABEL = []
    # Views: "frontal", "ap", "pa", "lateral", "all".
    _C.CXR.CHEXPERT.VIEWS = "frontal"
    # Keep each patient's first N studies; 0 keeps all.
    _C.CXR.CHEXPERT.MAX_STUDIES_PER_PATIENT = 0
    # Fraction of train.csv's patients held out as chexpert_val (patient-level hash split).
    _C.CXR.CHEXPERT.VAL_FRACTION = 0.1
    # Salt of the patient hash of the train/val split.
    _C.CXR.CHEXPERT.SPLIT_SEED = 0

    _C.CXR.MIMIC_CXR = CN()
    # Label table: "chexpert" or "negbio" (mimic-cxr-2.0.0-<labeler>.csv.gz).
    _C.CXR.MIMIC_CXR.LABELER = "chexpert"
    # As CXR.CHEXPERT: label set, uncertainty policy, exceptions, views, studies per patient.
    _C.CXR.MIMIC_CXR.LABELS = ["competition5"]
    _C.CXR.MIMIC_CXR.UNCERTAINTY = "zeros"
    _C.CXR.MIMIC_CXR.UNCERTAINTY_BY_LABEL = []
    _C.CXR.MIMIC_CXR.VIEWS = "frontal"
    _C.CXR.MIMIC_CXR.MAX_STUDIES_PER_PATIENT = 0

    _C.CXR.VINDR_LABELS = CN()
    # "multi_label" (image_labels_*.csv: the local and global labels) or "abnormal" (binary:
    # "No finding" vs any finding; also from the Kaggle train.csv).
    _C.CXR.VINDR_LABELS.TASK = "multi_label"
    # Labels of the multi-label task (VinDr names); empty: every label column of the file
    # (the 22 local labels then the 6 global diagnoses, as image_labels_*.csv orders them).
    _C.CXR.VINDR_LABELS.LABELS = []
    # How the 3 radiologists' labels of a training image combine: "majority" or "any".
    _C.CXR.VINDR_LABELS.READERS = "majority"
    # Fraction of the training images held out as vindr_labels_val (hash of image_id).
    _C.CXR.VINDR_LABELS.VAL_FRACTION = 0.2

    _C.CXR.IMAGE_FOLDER = CN()
    # Folder under the dataset root holding one sub-folder per class, either split
    # ({train,val,test}/<class>/) or flat (<class>/[images/]; split by a stratified hash).
    _C.CXR.IMAGE_FOLDER.NAME = ""
    # Class folders to use, in label order; empty: every class folder, sorted.
    _C.CXR.IMAGE_FOLDER.CLASSES = []
    # Flat layout: fractions of each class held out as val and test.
    _C.CXR.IMAGE_FOLDER.VAL_FRACTION = 0.2
    _C.CXR.IMAGE_FOLDER.TEST_FRACTION = 0.0
    _C.CXR.IMAGE_FOLDER.SPLIT_SEED = 0

    return cfg


def add_input_config(cfg):
    """``CXR.INPUT``: pixel scaling of every image read, and albumentations in training."""
    _C = cfg
    _C.CXR.INPUT = CN()
    # albumentations transforms applied in training after reading the image, before
    # detectron2's augmentations: a list of {"name": <albumentations class>, <kwarg>: value}.
    _C.CXR.INPUT.ALBUMENTATIONS = []
    # How pixel values become 8 bits (cxr_det.data.image_io, docs/images.md), for every image
    # read (training, evaluation, predict.py): "auto" (DICOM VOI LUT / window, else the full
    # stored range; 8-bit images as stored), "minmax" (full range, ignoring the window) or
    # "percentile" (window between PERCENTILES of the values; the only rule that clips).
    _C.CXR.INPUT.SCALING = "auto"
    # Low and high percentiles (0..100) of the "percentile" rule.
    _C.CXR.INPUT.PERCENTILES = [0.5, 99.5]
    # Read DICOMs that lack the preamble / DICM / file meta group (pydicom force=True), with a
    # note in the log; False rejects them (an error naming the file).
    _C.CXR.INPUT.ALLOW_NO_FILE_META = True

    return cfg


def add_mobilenet_config(cfg):
    """``CXR.MOBILENET``: torchvision's MobileNetV3 as a detectron2 backbone."""
    _C = cfg
    _C.CXR.MOBILENET = CN()
    # torchvision MobileNetV3 variant: "small" or "large".
    _C.CXR.MOBILENET.VARIANT = "small"
    # Load torchvision's ImageNet weights (needs network access to the weights).
    _C.CXR.MOBILENET.PRETRAINED = False
    # Stages returned by build_mobilenetv3_backbone (the FPN builder uses MODEL.FPN.IN_FEATURES).
    _C.CXR.MOBILENET.OUT_FEATURES = ["res3", "res4", "res5"]

    return cfg


def add_clinical_config(cfg):
    """``CXR.CLINICAL``: where each image's clinical record comes from, and its features."""
    _C = cfg.CXR
    _C.CLINICAL = CN()
    # Feed per-image clinical data (vitals, age, gender) to the model.
    _C.CLINICAL.ENABLED = False
    # Where the raw records come from: "mimic-iv-ed" (REFLACX joined to MIMIC-IV-ED triage and
    # MIMIC-IV patients), "dicom" (VinDr: PatientAge/PatientSex of each DICOM header), or the
    # path of a CSV with one row per image keyed by dicom_id (VinDr: image_id).
    _C.CLINICAL.SOURCE = "mimic-iv-ed"
    # Numeric features (record keys), cleaned, mean-imputed and normalised with training statistics.
    _C.CLINICAL.NUMERIC = list(CLINICAL_NUMERIC)
    # Categorical features; vocabularies learnt on the training split, index 0 = unknown.
    _C.CLINICAL.CATEGORICAL = list(CLINICAL_CATEGORICAL)
    # REFLACX: an image outside every ED stay of its patient is matched to the stay nearest in
    # time if the gap is at most this many days (integer); 0 keeps only containing stays.
    _C.CLINICAL.MATCH_WINDOW_DAYS = 7
    # Normalisation statistics and vocabularies (JSON written by training). Empty: fit them on
    # DATASETS.TRAIN and write OUTPUT_DIR/clinical_stats.json; they are also kept in checkpoints.
    _C.CLINICAL.STATS_FILE = ""
    # Embedding table size of each categorical feature (vocabulary + 1 for unknown). Filled from
    # the statistics when training starts; stored in OUTPUT_DIR/config.yaml for evaluation.
    _C.CLINICAL.CATEGORICAL_SIZES = []
    return cfg


def add_fusion_config(cfg):
    """``CXR.FUSION``: the clinical encoder and where its vector is fused with the image.

    The fusion models are ``MODEL.META_ARCHITECTURE: ClinicalGeneralizedRCNN`` or
    ``ClinicalRetinaNet``; with ``SPATIAL: none`` and ``ROI: False`` they are the stock models.
    """
    _C = cfg.CXR.FUSION = CN()
    # Fusion of the clinical vector with every FPN level (MDF-Net "3D"): "none"; "concat"
    # (concatenate the clinical map, then FUSE_DEPTH 3x3 convs back to the level's channels);
    # "add" (clinical map projected to the level's channels and added); "film" (per-channel
    # scale and shift, features * (1 + gamma) + beta, starting at gamma = beta = 0).
    _C.SPATIAL = "none"
    # How the clinical vector becomes a map: "tile" (the vector repeated at every position,
    # HIDDEN_DIMS[-1] channels); "deconv" (a learned transposed-conv decoder to an 8x8 map of
    # SPATIAL_CHANNELS channels, resized to each level; spatially varying scale/shift for "film").
    _C.SPATIAL_DECODER = "tile"
    # Channels of the clinical map made by the "deconv" decoder.
    _C.SPATIAL_CHANNELS = 16
    # Number of 3x3 convs after concatenation in "concat" mode (>= 1; ReLU between them).
    _C.FUSE_DEPTH = 1
    # Concatenate the clinical vector of each RoI's image to the box-head features before the
    # box predictor (MDF-Net "1D"; R-CNN only, uses ClinicalStandardROIHeads).
    _C.ROI = False
    # Embedding size of each categorical feature in the clinical encoder.
    _C.EMBED_DIM = 8
    # Hidden layers of the clinical encoder's MLP (Linear + ReLU each); the clinical vector
    # has HIDDEN_DIMS[-1] elements.
    _C.HIDDEN_DIMS = [64, 64]
    # Dropout after each hidden layer of the clinical encoder.
    _C.DROPOUT = 0.0
    # Classifiers only: concatenate the clinical vector to the globally pooled image features
    # before the head (the classification counterpart of ROI). SPATIAL applies to the feature
    # map the classifier pools (CXR.CLASSIFIER.IN_FEATURE): "film" is FiLM on the last map.
    _C.POOLED = False
    return cfg


def add_training_control_config(cfg):
    """``CXR.TRAIN``: validation loss, best checkpoint, early stopping, plateau LR, curves."""
    _C = cfg.CXR
    _C.TRAIN = CN()
    # Every TEST.EVAL_PERIOD iterations and after the last one, compute the training losses on
    # DATASETS.TEST[0] (no augmentation, no gradients, BatchNorm statistics frozen) and log them
    # as val_total_loss, val_loss_cls, ... beside the training losses (metrics.json, TensorBoard).
    _C.TRAIN.VAL_LOSS = True
    # Evaluation metric, as EvalHook logs it ("bbox/AP50", "froc/CPM", "vinbigdata/mAP40"; with
    # several DATASETS.TEST prefixed by the dataset name), that picks OUTPUT_DIR/model_best.pth
    # and drives early stopping and the plateau schedule. "" turns all three off.
    _C.TRAIN.BEST_METRIC = "bbox/AP50"
    # "max" if a larger BEST_METRIC is better (AP, CPM), "min" if smaller is (a loss).
    _C.TRAIN.BEST_MODE = "max"
    # An evaluation improves on the best so far only if it beats it by more than this
    # (absolute, in BEST_METRIC's unit); used by early stopping and the plateau schedule.
    _C.TRAIN.MIN_DELTA = 0.0
    # Early stopping: end training once BEST_METRIC has not improved for this many evaluations
    # in a row (the final evaluation and model_final.pth are still done); 0 = off.
    _C.TRAIN.PATIENCE = 0

    _C.TRAIN.PLATEAU = CN()
    # Multiply the learning rate by FACTOR once BEST_METRIC has not improved for PATIENCE
    # evaluations in a row (torch's ReduceLROnPlateau). It scales SOLVER's schedule (warmup,
    # SOLVER.STEPS) rather than replacing it: leave SOLVER.STEPS empty for a plateau-only schedule.
    _C.TRAIN.PLATEAU.ENABLED = False
    # Factor applied to the learning rate at each plateau (< 1).
    _C.TRAIN.PLATEAU.FACTOR = 0.1
    # Evaluations without improvement that make a plateau (at least 1); counting restarts after each reduction.
    _C.TRAIN.PLATEAU.PATIENCE = 2
    # The learning rate is never reduced below this.
    _C.TRAIN.PLATEAU.MIN_LR = 0.0

    # At the end of training draw OUTPUT_DIR/metrics.json as training_losses.png (training and
    # validation losses), training_metrics.png (evaluation metrics) and training_lr.png.
    _C.TRAIN.PLOT_CURVES = True

    _C.SOLVER = CN()
    # Optimizer: "SGD" (detectron2's: SOLVER.MOMENTUM, NESTEROV), "Adam" or "AdamW" (torch's, with
    # BETAS; the CheXpert baseline trained DenseNet-121 with Adam, betas 0.9/0.999). All use
    # SOLVER.BASE_LR, WEIGHT_DECAY(_NORM/_BIAS), BIAS_LR_FACTOR, the LR schedule and CLIP_GRADIENTS.
    _C.SOLVER.OPTIMIZER = "SGD"
    _C.SOLVER.BETAS = [0.9, 0.999]
    return cfg


def add_cxr_eval_config(cfg):
    """``TEST.CXR_EVAL``: the options of :class:`cxr_det.evaluation.CXRDetectionEvaluator`, one
    key ``TEST.CXR_EVAL.<NAME>`` per entry of :data:`CXR_EVAL_OPTIONS` (where each key's
    meaning, unit and range are written), set to its default (list options as lists)."""
    cfg.TEST.CXR_EVAL = CN()
    for option in CXR_EVAL_OPTIONS:
        default = option["default"]
        cfg.TEST.CXR_EVAL[option["name"].upper()] = list(default) if option.get("many") else default
    return cfg


def add_classification_config(cfg):
    """``CXR.CLASSIFIER`` (``MODEL.META_ARCHITECTURE: ClinicalImageClassifier``) and
    ``TEST.CXR_CLS_EVAL`` (its evaluator). The backbone is ``MODEL.BACKBONE.NAME``:
    detectron2's ``build_resnet_backbone`` (``MODEL.RESNETS.DEPTH`` 18/34/50, ``OUT_FEATURES``
    ["res5"]) or ``build_torchvision_classifier_backbone`` (``CXR.CLASSIFIER.TORCHVISION``)."""
    _C = cfg.CXR.CLASSIFIER = CN()
    # "multi_label" or "single_label"; "" = the task in the training dataset's metadata
    # (filled when training starts and stored in OUTPUT_DIR/config.yaml).
    _C.TASK = ""
    # Number of labels (multi_label) or classes (single_label); 0 = the training dataset's
    # thing_classes (filled when training starts, like TASK).
    _C.NUM_CLASSES = 0
    # Backbone output that is pooled; "" = the backbone's last output (by stride).
    _C.IN_FEATURE = ""
    # Global pooling of that map: "avg" or "max".
    _C.POOLING = "avg"
    # Dropout before the linear head (0..1).
    _C.DROPOUT = 0.0
    # "auto" (BCE-with-logits for multi_label, cross-entropy for single_label), "bce", "ce",
    # or "focal" (sigmoid focal loss for multi_label, softmax focal loss for single_label).
    _C.LOSS = "auto"
    # Focal loss focusing parameter gamma (>= 0) and alpha (weight of positives, 0..1; < 0 = off).
    _C.FOCAL_GAMMA = 2.0
    _C.FOCAL_ALPHA = -1.0
    # Multi-label: BCE pos_weight per label. "none"; "prevalence" (negatives / positives of
    # each label in DATASETS.TRAIN, computed when training starts into POS_WEIGHT_VALUES).
    _C.POS_WEIGHT = "none"
    # pos_weight per label (C floats); filled from the training split by POS_WEIGHT
    # "prevalence" and stored in OUTPUT_DIR/config.yaml; may be given by hand.
    _C.POS_WEIGHT_VALUES = []
    # Single-label: cross-entropy class weights. "none"; "balanced" (N / (C * n_c), as
    # scikit-learn's compute_class_weight, from DATASETS.TRAIN into CLASS_WEIGHT_VALUES).
    _C.CLASS_WEIGHT = "none"
    _C.CLASS_WEIGHT_VALUES = []
    # Single-label cross-entropy label smoothing (0..1).
    _C.LABEL_SMOOTHING = 0.0
    # Images are resized to INPUT_SIZE x INPUT_SIZE pixels (the classifiers' usual square
    # input, 224 for CheXpert's DenseNet-121); 0 = detectron2's INPUT.MIN_SIZE_* resize.
    _C.INPUT_SIZE = 224
    # Input channels: 3 (INPUT.FORMAT "RGB"/"BGR", the gray X-ray repeated) or 1 (INPUT.FORMAT
    # "L", one PIXEL_MEAN/PIXEL_STD value; the first convolution's weights summed over RGB).
    _C.IN_CHANNELS = 3
    _C.TORCHVISION = CN()
    # torchvision classifier whose feature extractor is the backbone (TORCHVISION_CLASSIFIERS).
    _C.TORCHVISION.ARCH = "densenet121"
    # Pretrained weights of the torchvision model: "" (from scratch), "imagenet" (torchvision's
    # default weights, downloaded), or a path / URL of a torchvision state dict.
    _C.TORCHVISION.WEIGHTS = ""

    _E = cfg.TEST.CXR_CLS_EVAL = CN()
    # Decision threshold per label: "f2" (maximises F2 on the dataset it is chosen on),
    # "youden" (maximises sensitivity + specificity - 1) or "fixed" (FIXED_THRESHOLD).
    _E.THRESHOLD_RULE = "f2"
    _E.FIXED_THRESHOLD = 0.5
    # Dataset whose chosen thresholds the other test datasets use (the validation split);
    # "" = DATASETS.TEST[0]. Its thresholds are written to inference/<name>/thresholds.json.
    _E.THRESHOLD_DATASET = ""
    # Bootstrap resamples of the images for 95% confidence intervals (0 = off).
    _E.BOOTSTRAP = 0
    _E.BOOTSTRAP_SEED = 0
    # Write ROC, precision-recall and confusion-matrix PNGs beside metrics.json.
    _E.PLOTS = True
    return cfg


def get_cxr_cfg(config_file=None, opts=()):
    """A detectron2 config with cxr_det's keys, merged from ``config_file`` then ``opts``; not
    frozen and not adapted to this machine (see :func:`cxr_det.engine.defaults.adapt_to_machine`).

    Args:
        config_file: YAML path (``_BASE_`` allowed), or None for the defaults.
        opts: ``[KEY, VALUE, ...]`` overrides, applied after the file.

    Raises:
        KeyError: a key of the file or of ``opts`` that the config does not have (detectron2).
    """
    cfg = add_cxr_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg
