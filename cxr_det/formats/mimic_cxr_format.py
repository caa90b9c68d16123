"""MIMIC-CXR-JPG and MIMIC-CXR (DICOM) as PhysioNet ships them: image paths, tables, columns.

Sources:

* MIMIC-CXR-JPG: Johnson A., Lungren M., Peng Y., Lu Z., Mark R., Berkowitz S., Horng S.,
  "MIMIC-CXR-JPG - chest radiographs with structured labels", version 2.0.0 (PhysioNet, 2019,
  https://doi.org/10.13026/8360-t248, https://physionet.org/content/mimic-cxr-jpg/2.0.0/) and
  version 2.1.0 (2024, https://doi.org/10.13026/jsn5-t979); paper: Johnson A. E. W. et al.,
  "MIMIC-CXR-JPG, a large publicly available database of labeled chest radiographs",
  arXiv:1901.07042. 377,110 JPGs of 227,827 studies.
* MIMIC-CXR (DICOM): Johnson A. E. W. et al., "MIMIC-CXR, a de-identified publicly available
  database of chest radiographs with free-text reports", Scientific Data 6, 317 (2019); PhysioNet
  https://physionet.org/content/mimic-cxr/2.0.0/. REFLACX's metadata names its images by
  their path in this release.

The PhysioNet pages were checked for the versions and DOIs (the ``pages`` search corpus);
the table columns follow the MIMIC-CXR-JPG paper and the project's dataset notes. That 2.1.0
keeps the ``mimic-cxr-2.0.0-*`` table names is unconfirmed.

Layout under the dataset root::

    mimic-cxr-jpg/files/pNN/pSSSSSSSS/sTTTTTTTT/<dicom_id>.jpg   NN = first two digits of the subject
    mimic-cxr-jpg/mimic-cxr-2.0.0-{metadata,chexpert,negbio,split}.csv.gz
    mimic-cxr/files/pNN/pSSSSSSSS/sTTTTTTTT/<dicom_id>.dcm

The tables ship gzipped; users often gunzip them, so readers accept both names (see
:func:`cxr_det.data.datasets.common.find_table`). Constants only (standard-library imports).
"""

__all__ = [
    "MIMIC_CXR_JPG_DIR",
    "MIMIC_CXR_DICOM_DIR",
    "MIMIC_CXR_IMAGE_DIRS",
    "MIMIC_CXR_IMAGE_SUFFIXES",
    "MIMIC_CXR_FILES_DIR",
    "MIMIC_CXR_IMAGE_PATH",
    "MIMIC_CXR_STUDY_DIR_PATTERN",
    "MIMIC_CXR_METADATA",
    "MIMIC_CXR_CHEXPERT",
    "MIMIC_CXR_NEGBIO",
    "MIMIC_CXR_SPLIT",
    "MIMIC_CXR_METADATA_COLUMNS",
    "MIMIC_CXR_OBSERVATIONS",
    "MIMIC_CXR_LABEL_COLUMNS",
    "MIMIC_CXR_LABEL_VALUES",
    "MIMIC_CXR_SPLIT_COLUMNS",
    "MIMIC_CXR_SPLITS",
    "MIMIC_CXR_VIEW_POSITIONS",
    "MIMIC_CXR_FRONTAL_VIEWS",
    "MIMIC_CXR_LATERAL_VIEWS",
    "MIMIC_CXR_VIEW_FILTERS",
    "MIMIC_CXR_LABELERS",
]

# The two releases' folders under the dataset root.
MIMIC_CXR_JPG_DIR = "mimic-cxr-jpg"
MIMIC_CXR_DICOM_DIR = "mimic-cxr"
# Image source name -> folder, and -> file suffix.
MIMIC_CXR_IMAGE_DIRS = {"jpg": MIMIC_CXR_JPG_DIR, "dicom": MIMIC_CXR_DICOM_DIR}
MIMIC_CXR_IMAGE_SUFFIXES = {"jpg": ".jpg", "dicom": ".dcm"}

# Images sit under <release folder>/files/, one folder per subject group, subject and study.
MIMIC_CXR_FILES_DIR = "files"
# str.format template of an image's path inside a release folder; ``subject_group`` is the
# first two digits of ``subject_id`` (p10 .. p19), ``suffix`` one of MIMIC_CXR_IMAGE_SUFFIXES.
MIMIC_CXR_IMAGE_PATH = "files/p{subject_group}/p{subject_id}/s{study_id}/{dicom_id}{suffix}"
# A study folder of that path: "s" and the study_id.
MIMIC_CXR_STUDY_DIR_PATTERN = r"^s(\d+)$"

# Tables of MIMIC-CXR-JPG, in MIMIC_CXR_JPG_DIR (as shipped: gzipped).
MIMIC_CXR_METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
MIMIC_CXR_CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv.gz"
MIMIC_CXR_NEGBIO = "mimic-cxr-2.0.0-negbio.csv.gz"
MIMIC_CXR_SPLIT = "mimic-cxr-2.0.0-split.csv.gz"

# mimic-cxr-2.0.0-metadata.csv: one row per image (DICOM header fields). StudyDate is
# YYYYMMDD (shifted), StudyTime HHMMSS.fff written as a number (leading zeros lost).
MIMIC_CXR_METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)

# The 14 CheXpert observations, labelled per study by the CheXpert and NegBio labelers, in the
# order of the label tables' columns.
MIMIC_CXR_OBSERVATIONS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
# mimic-cxr-2.0.0-{chexpert,negbio}.csv: one row per study; every image of the study takes
# the study's labels. Readers should select label columns by name.
MIMIC_CXR_LABEL_COLUMNS = ("subject_id", "study_id") + MIMIC_CXR_OBSERVATIONS
# Label cells: 1.0 positive, 0.0 negative, -1.0 uncertain; blank = not mentioned.
MIMIC_CXR_LABEL_VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}

# mimic-cxr-2.0.0-split.csv: one row per image.
MIMIC_CXR_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
# Values of its ``split`` column (also REFLACX's); cxr_det.formats.normalise_split maps
# "validate" to "val".
MIMIC_CXR_SPLITS = ("train", "validate", "test")

# Values of the metadata's ViewPosition (blank for some images).
MIMIC_CXR_VIEW_POSITIONS = ("PA", "AP", "LATERAL", "LL")

# View filters of the image-label registrar (cxr_det.data.datasets.mimic_cxr_labels), by
# ViewPosition: frontal = PA or AP, lateral = LATERAL or LL; "all" keeps every image, blank
# ViewPosition included. Other ViewPosition values (e.g. oblique views) pass only "all".
MIMIC_CXR_FRONTAL_VIEWS = ("PA", "AP")
MIMIC_CXR_LATERAL_VIEWS = ("LATERAL", "LL")
MIMIC_CXR_VIEW_FILTERS = {
    "frontal": MIMIC_CXR_FRONTAL_VIEWS,
    "ap": ("AP",),
    "pa": ("PA",),
    "lateral": MIMIC_CXR_LATERAL_VIEWS,
    "all": None,
}
# Label tables by labeler name.
MIMIC_CXR_LABELERS = {"chexpert": MIMIC_CXR_CHEXPERT, "negbio": MIMIC_CXR_NEGBIO}
