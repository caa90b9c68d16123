"""REFLACX as PhysioNet ships it: folder layout, file names, columns and label vocabularies.

Source: Bigolin Lanfredi R., Zhang M., Auffermann W., Chan J., Duong P., Srikumar V., Drew T.,
Schroeder J., Tasdizen T., "REFLACX: Reports and eye-tracking data for localization of
abnormalities in chest x-rays", version 1.0.0, PhysioNet, 2021,
https://doi.org/10.13026/e0dj-8498 (https://physionet.org/content/reflacx-xray-localization/1.0.0/);
paper: "REFLACX, a dataset of reports and eye-tracking data for localization of abnormalities
in chest x-rays", Scientific Data 9, 350 (2022), https://doi.org/10.1038/s41597-022-01441-z.
The authors' code (https://github.com/ricbl/eyetracking) documents the certainty scale. The
version, DOI and authors were checked on the PhysioNet page (``pages`` search corpus); the
columns and vocabularies follow the dataset's documentation as summarised in the project's
dataset notes.

3,032 readings of 2,616 MIMIC-CXR images by 5 radiologists: phase 1 (59 images) and phase 2
(50 images) each read by all 5, phase 3 (about 2,507 images) by one each. Layout under
``<dataset root>/reflacx/``::

    main_data/metadata_phase_{1,2,3}.csv          one row per reading
    main_data/<reading id>/anomaly_location_ellipses.csv
    main_data/<reading id>/chest_bounding_box.csv
    main_data/<reading id>/fixations.csv
    main_data/<reading id>/timestamps_transcription.csv
    main_data/<reading id>/transcription.txt
    gaze_data/<reading id>/gaze.csv

The metadata's ``image`` is the DICOM's path inside MIMIC-CXR
(``physionet.org/files/mimic-cxr/2.0.0/files/pNN/p<subject>/s<study>/<dicom_id>.dcm``), its
``split`` MIMIC-CXR's (see :mod:`.mimic_cxr_format`). Ellipse coordinates are integer
pixels of the full-resolution image; each ellipse is axis-aligned and inscribed in its
``xmin..xmax, ymin..ymax`` box. Label names differ between phase 1 and phases 2-3.

Constants only (standard-library imports): the config module, the reader
(:mod:`cxr_det.data.datasets.reflacx`), the clinical join and the synthetic writer import it.
The hand-written fixtures of ``tests/data/datasets/test_reflacx.py`` spell this layout out independently.
"""

__all__ = [
    "REFLACX_DIR",
    "REFLACX_MAIN_DIR",
    "REFLACX_GAZE_DIR",
    "REFLACX_PHASES",
    "REFLACX_METADATA",
    "REFLACX_METADATA_COLUMNS",
    "REFLACX_IMAGE_PREFIX",
    "REFLACX_ELLIPSE_FILE",
    "REFLACX_ELLIPSE_COLUMNS",
    "REFLACX_CHEST_BOX_FILE",
    "REFLACX_CHEST_BOX_COLUMNS",
    "REFLACX_FIXATIONS_FILE",
    "REFLACX_FIXATIONS_COLUMNS",
    "REFLACX_TRANSCRIPTION_FILE",
    "REFLACX_TIMESTAMPS_FILE",
    "REFLACX_TIMESTAMPS_COLUMNS",
    "REFLACX_GAZE_FILE",
    "REFLACX_GAZE_COLUMNS",
    "REFLACX_PHASE1_LABELS",
    "REFLACX_LABELS",
    "REFLACX_LABELS_BY_PHASE",
    "REFLACX_PHASE1_TO_LABEL",
    "REFLACX_CERTAINTY_NAMES",
    "REFLACX_PRESENT_CERTAINTY",
    "REFLACX_NON_LESION_LABELS",
    "REFLACX_LESION_LABELS",
    "REFLACX_READER_MODES",
    "MDF_NET_CLASSES",
]

# Folders, relative to the dataset root.
REFLACX_DIR = "reflacx"
REFLACX_MAIN_DIR = "reflacx/main_data"
REFLACX_GAZE_DIR = "reflacx/gaze_data"

REFLACX_PHASES = (1, 2, 3)
# Metadata of one phase, in REFLACX_MAIN_DIR: str.format with ``phase``.
REFLACX_METADATA = "metadata_phase_{phase}.csv"
# Its first columns, in order; one column per label of the phase follows (alphabetical).
# eye_tracking_data_discarded is True/False; image_size_x/_y are the image's width/height.
REFLACX_METADATA_COLUMNS = (
    "id",
    "split",
    "eye_tracking_data_discarded",
    "image",
    "dicom_id",
    "subject_id",
    "image_size_x",
    "image_size_y",
)
# What the ``image`` cells start with (the MIMIC-CXR DICOM release's download path).
REFLACX_IMAGE_PREFIX = "physionet.org/files/mimic-cxr/2.0.0/"

# Per reading, in REFLACX_MAIN_DIR/<reading id>/: the ellipses, then one True/False column
# per label of the reading's phase (at least one True per row).
REFLACX_ELLIPSE_FILE = "anomaly_location_ellipses.csv"
REFLACX_ELLIPSE_COLUMNS = ("xmin", "ymin", "xmax", "ymax", "certainty")
# The box around lungs and heart.
REFLACX_CHEST_BOX_FILE = "chest_bounding_box.csv"
REFLACX_CHEST_BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
REFLACX_FIXATIONS_FILE = "fixations.csv"
REFLACX_FIXATIONS_COLUMNS = (
    "timestamp_start_fixation",
    "timestamp_end_fixation",
    "x_position",
    "y_position",
    "pupil_area_normalized",
    "angular_resolution_x_pixels_per_degree",
    "angular_resolution_y_pixels_per_degree",
    "window_level",
    "window_width",
    "xmin_shown_from_image",
    "ymin_shown_from_image",
    "xmax_shown_from_image",
    "ymax_shown_from_image",
    "xmin_in_screen_coordinates",
    "ymin_in_screen_coordinates",
    "xmax_in_screen_coordinates",
    "ymax_in_screen_coordinates",
)
REFLACX_TRANSCRIPTION_FILE = "transcription.txt"
REFLACX_TIMESTAMPS_FILE = "timestamps_transcription.csv"
REFLACX_TIMESTAMPS_COLUMNS = ("word", "timestamp_start_word", "timestamp_end_word")
# In REFLACX_GAZE_DIR/<reading id>/: one row per eye-tracker sample.
REFLACX_GAZE_FILE = "gaze.csv"
REFLACX_GAZE_COLUMNS = ("timestamp_sample",) + REFLACX_FIXATIONS_COLUMNS[2:]

# Phase 1 label columns (metadata and ellipse CSVs of phase 1).
REFLACX_PHASE1_LABELS = (
    "Airway wall thickening",
    "Atelectasis",
    "Consolidation",
    "Emphysema",
    "Enlarged cardiac silhouette",
    "Fibrosis",
    "Fracture",
    "Groundglass opacity",
    "Mass",
    "Nodule",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary edema",
    "Quality issue",
    "Support devices",
    "Wide mediastinum",
    "Other",
)

# Phases 2 and 3 label columns.
REFLACX_LABELS = (
    "Abnormal mediastinal contour",
    "Acute fracture",
    "Atelectasis",
    "Consolidation",
    "Enlarged cardiac silhouette",
    "Enlarged hilum",
    "Groundglass opacity",
    "Hiatal hernia",
    "High lung volume / emphysema",
    "Interstitial lung disease",
    "Lung nodule or mass",
    "Pleural abnormality",
    "Pneumothorax",
    "Pulmonary edema",
    "Support devices",
    "Other",
)
REFLACX_LABELS_BY_PHASE = {1: REFLACX_PHASE1_LABELS, 2: REFLACX_LABELS, 3: REFLACX_LABELS}

# The REFLACX authors' mapping of phase-1 names onto phase-2/3 names (others are unchanged).
REFLACX_PHASE1_TO_LABEL = {
    "Pleural effusion": "Pleural abnormality",
    "Pleural thickening": "Pleural abnormality",
    "Mass": "Lung nodule or mass",
    "Nodule": "Lung nodule or mass",
    "Fracture": "Acute fracture",
    "Wide mediastinum": "Abnormal mediastinal contour",
    "Emphysema": "High lung volume / emphysema",
}

# Ellipse ``certainty`` (anomaly_location_ellipses.csv) and the metadata label cells: 1..5
# with these names, as the authors' data-collection interface offered them (README of
# github.com/ricbl/eyetracking, "Drawing ellipses"; the interface displayed them as 1/3/5/7/9).
REFLACX_CERTAINTY_NAMES = {
    1: "Unlikely",
    2: "Less likely",
    3: "Possibly",
    4: "Suspicious for / Probably",
    5: "Consistent with",
}
# The authors count a label as present from "Possibly" on (their examples_and_paper_numbers/
# interrater.py keeps ellipses with certainty > 2). MDF-Net keeps every ellipse instead.
REFLACX_PRESENT_CERTAINTY = 3

# Labels that are not lesions to localise.
REFLACX_NON_LESION_LABELS = ("Support devices", "Quality issue", "Other")

# Every REFLACX lesion label (phase-2/3 names): the class set "all".
REFLACX_LESION_LABELS = tuple(label for label in REFLACX_LABELS if label not in REFLACX_NON_LESION_LABELS)

# Reader modes (cxr_det.formats.READER_MODES) REFLACX implements; the first is the default.
REFLACX_READER_MODES = ("all_readers", "per_reading", "mean_ellipse")

# The 5 classes of MDF-Net (Hsieh et al., "MDF-Net", Scientific Reports 13:15873, 2023; REFLACX + MIMIC-IV-ED).
MDF_NET_CLASSES = (
    "Enlarged cardiac silhouette",
    "Atelectasis",
    "Pleural abnormality",
    "Consolidation",
    "Pulmonary edema",
)
