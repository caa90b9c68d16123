"""Label vocabularies of the chest X-ray datasets, as their owners name them."""

# REFLACX phase 1 label columns (metadata and ellipse CSVs of phase 1).
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

# REFLACX phases 2 and 3 label columns.
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

# REFLACX ellipse ``certainty`` (anomaly_location_ellipses.csv) and the metadata label cells:
# 1..5 with these names, as the authors' data-collection interface offered them (README of
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
REFLACX_LESION_LABELS = tuple(l for l in REFLACX_LABELS if l not in REFLACX_NON_LESION_LABELS)

# The 5 classes of MDF-Net (REFLACX + MIMIC-IV-ED).
MDF_NET_CLASSES = (
    "Enlarged cardiac silhouette",
    "Atelectasis",
    "Pleural abnormality",
    "Consolidation",
    "Pulmonary edema",
)

# VinDr-CXR's vocabularies live in cxr_det.formats.vindr_format; re-exported here for the
# modules that still import them from this one (the config module, the synthetic VinDr
# writer, tests/test_synthetic.py).
from cxr_det.formats import NO_FINDING as VINDR_NO_FINDING  # noqa: E402
from cxr_det.formats.vindr_format import (  # noqa: E402
    VINDR_GLOBAL_LABELS,
    VINDR_KAGGLE_CLASSES,
    VINDR_LOCAL_LABELS,
    VINDR_NO_FINDING_ID,
)
