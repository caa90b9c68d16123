"""VinDr-CXR as its owners ship it: folder layouts, file names, columns and vocabularies.

Two releases of the same 18,000 posteroanterior chest X-rays (DICOM) are read:

* **PhysioNet** (the complete release): Nguyen H. Q., Pham H. H., Le T. L., Dao M., Lam K.,
  "VinDr-CXR: An open dataset of chest X-rays with radiologist annotations", version 1.0.0,
  PhysioNet, 2021, https://doi.org/10.13026/3akn-b287
  (https://physionet.org/content/vindr-cxr/1.0.0/). 15,000 training images, each labelled
  independently by 3 of 17 radiologists (``rad_id`` R1..R17), and 3,000 test images
  labelled by the consensus of 5 radiologists; 22 local labels (boxes) and 6 global labels
  (image-level impressions).
* **Kaggle** ("VinBigData Chest X-ray Abnormalities Detection", Vingroup Big Data Institute,
  2020-2021, https://www.kaggle.com/c/vinbigdata-chest-xray-abnormalities-detection): the
  same training images with the boxes of 14 of the local labels only, numbered by
  ``class_id`` 0..13, and "No finding" as ``class_id`` 14, in one ``train.csv``; the test
  labels were never released.

The dataset paper: Nguyen H. Q. et al., "VinDr-CXR: An open dataset of chest X-rays with
radiologist's annotations", Scientific Data 9, 429 (2022),
https://doi.org/10.1038/s41597-022-01498-w (preprint arXiv:2012.15029).

Layouts under ``<dataset root>/vindr-cxr/`` (docs/CONTRACT.md)::

    annotations/annotations_{train,test}.csv    PhysioNet boxes
    annotations/image_labels_{train,test}.csv   PhysioNet image labels (one 0/1 column per label)
    train.csv                                   Kaggle boxes
    {train,test}/<image_id>.dicom               images (both releases)

Each table may also be gzipped (``.csv.gz``). "No finding" rows have empty box cells; a
test row's ``rad_id`` may be blank or the column absent (the consensus, recorded as
:data:`VINDR_CONSENSUS_READER`); a PhysioNet table may or may not carry ``class_id``.
The hand-written fixtures of ``tests/data/datasets/test_vindr.py`` spell this layout out independently
of this module: they are the check against the real files.

Constants only (standard-library imports): the config module, the reader
(:mod:`cxr_det.data.datasets.vindr`), the PNG cache and the synthetic writer import it.
"""
from cxr_det.formats import NO_FINDING

__all__ = [
    "VINDR_DIR",
    "VINDR_LAYOUTS",
    "VINDR_IMAGE_FOLDERS",
    "VINDR_DICOM_SUFFIX",
    "VINDR_PHYSIONET_ANNOTATIONS",
    "VINDR_PHYSIONET_IMAGE_LABELS",
    "VINDR_KAGGLE_ANNOTATIONS",
    "VINDR_BOX_COLUMNS",
    "VINDR_PHYSIONET_COLUMNS",
    "VINDR_KAGGLE_COLUMNS",
    "VINDR_IMAGE_LABEL_KEYS",
    "VINDR_RAD_ID_PATTERN",
    "VINDR_CONSENSUS_READER",
    "VINDR_READER_MODES",
    "VINDR_KAGGLE_CLASSES",
    "VINDR_NO_FINDING_ID",
    "VINDR_LOCAL_LABELS",
    "VINDR_GLOBAL_LABELS",
    "VINDR_IMAGE_LABEL_COLUMNS",
    "VINDR_IMAGE_LABEL_SPELLINGS",
    "VINDR_5_CLASSES",
]

# The dataset's folder under the dataset root.
VINDR_DIR = "vindr-cxr"
# The releases read, in the order a layout is looked for (PhysioNet wins when both are present).
VINDR_LAYOUTS = ("physionet", "kaggle")
# Image folders under VINDR_DIR, one DICOM per image: <folder>/<image_id>.dicom. The Kaggle
# release's test folder has images without labels.
VINDR_IMAGE_FOLDERS = ("train", "test")
VINDR_DICOM_SUFFIX = ".dicom"

# Tables, relative to VINDR_DIR, by the image folder whose images they describe.
VINDR_PHYSIONET_ANNOTATIONS = {
    "train": "annotations/annotations_train.csv",
    "test": "annotations/annotations_test.csv",
}
VINDR_PHYSIONET_IMAGE_LABELS = {
    "train": "annotations/image_labels_train.csv",
    "test": "annotations/image_labels_test.csv",
}
VINDR_KAGGLE_ANNOTATIONS = {"train": "train.csv"}

# Box corners in pixels of the DICOM as stored (x to the right, y down); empty for "No finding".
VINDR_BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
# annotations_{train,test}.csv: one row per box, or one "No finding" row per reader of a
# normal image. ``rad_id`` is required in the training table only; ``class_id`` is optional.
VINDR_PHYSIONET_COLUMNS = ("image_id", "rad_id", "class_name", *VINDR_BOX_COLUMNS)
# Kaggle train.csv: the same rows with the Kaggle class_id (see VINDR_KAGGLE_CLASSES).
VINDR_KAGGLE_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", *VINDR_BOX_COLUMNS)
# image_labels_{train,test}.csv: these key columns (one row per image and reader in train,
# one per image in test), then one 0/1 column per label of VINDR_IMAGE_LABEL_COLUMNS.
# Readers should select the label columns by name, not by position.
VINDR_IMAGE_LABEL_KEYS = {"train": ("image_id", "rad_id"), "test": ("image_id",)}

# A radiologist's id in ``rad_id``: "R" and a number (R1..R17 in v1.0.0).
VINDR_RAD_ID_PATTERN = r"^R\d+$"
# Reader id recorded for rows without a rad_id (the consensus labels of the test set).
VINDR_CONSENSUS_READER = "consensus"
# Reader modes (cxr_det.formats.READER_MODES) that VinDr-CXR implements; a rad_id such as
# "R9" selects that radiologist's boxes.
VINDR_READER_MODES = ("all_readers", "weighted_boxes_fusion")

# Kaggle class_id 0..13, in that order; class_id 14 is cxr_det.formats.NO_FINDING.
VINDR_KAGGLE_CLASSES = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
)
VINDR_NO_FINDING_ID = 14

# All 22 local labels (boxes) of the PhysioNet release, as ``class_name`` spells them.
VINDR_LOCAL_LABELS = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
)

# The 6 global (image-level) labels of image_labels_*.csv; the last is "No finding".
VINDR_GLOBAL_LABELS = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", NO_FINDING)

# Label columns of image_labels_*.csv: the 22 local labels, then the 6 global ones.
VINDR_IMAGE_LABEL_COLUMNS = VINDR_LOCAL_LABELS + VINDR_GLOBAL_LABELS

# Spellings of an image-label column found in the shipped files, {label: (spellings, ...)}:
# public code reading v1.0.0 renames image_labels_test.csv's "Other disease" to the train
# file's "Other diseases". The reader column of image_labels_train.csv is written ``rad_id``
# or ``rad_ID`` in the code that reads it (which one the files hold is unconfirmed): readers
# should match it case-insensitively.
VINDR_IMAGE_LABEL_SPELLINGS = {"Other diseases": ("Other diseases", "Other disease")}

# The 5-class subset of configs/VinDr/retinanet_R_50_FPN_5cls.yaml (this project's choice).
VINDR_5_CLASSES = ("Aortic enlargement", "Cardiomegaly", "ILD", "Infiltration", "Nodule/Mass")
