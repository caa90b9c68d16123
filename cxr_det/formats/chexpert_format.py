"""CheXpert v1.0 as the Stanford ML Group ships it: folders, tables, columns, label values.

Sources:

* Irvin J., Rajpurkar P., Ko M., Yu Y., Ciurea-Ilcus S., Chute C., Marklund H., Haghgoo B.,
  Ball R., Shpanskaya K., Seekins J., Mong D. A., Halabi S. S., Sandberg J. K., Jones R.,
  Larson D. B., Langlotz C. P., Patel B. N., Lungren M. P., Ng A. Y., "CheXpert: A Large Chest
  Radiograph Dataset with Uncertainty Labels and Expert Comparison", AAAI 2019
  (arXiv:1901.07031): 224,316 chest radiographs of 65,240 patients, 14 observations labelled
  from the reports as positive, negative or uncertain; validation set of 200 studies labelled
  by 3 radiologists; 5 competition observations.
* Stanford ML Group, CheXpert dataset and competition page,
  https://stanfordmlgroup.github.io/competitions/chexpert/ (v1.0; the downsampled copy
  ``CheXpert-v1.0-small``, about 11 GB, and the original ``CheXpert-v1.0``).

Checked with the project's ``search`` tool (docs/pages corpora): the counts above (paper
abstract), the column names and their order ``Path, Sex, Age, Frontal/Lateral, AP/PA`` then
the 14 observations from ``No Finding`` to ``Support Devices`` (public dataset cards of the
CSV and notebooks reading it), 223,414 rows in ``train.csv`` and 234 in ``valid.csv``. The
``AP/PA`` values ``LL``/``RL`` and ``Sex`` ``Unknown`` come from the project's dataset notes
(``shared/notes/datasets.md``), not from the primary source (unconfirmed).

Layout under the dataset root::

    chexpert/CheXpert-v1.0-small/train.csv                                  (or CheXpert-v1.0/)
    chexpert/CheXpert-v1.0-small/valid.csv
    chexpert/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg
    chexpert/CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg

``Path`` starts with the dataset folder name, so the image of a row is
``<root>/chexpert/<Path>``. Constants only (standard-library imports).
"""

__all__ = [
    "CHEXPERT_DIR",
    "CHEXPERT_FOLDERS",
    "CHEXPERT_TRAIN_CSV",
    "CHEXPERT_VALID_CSV",
    "CHEXPERT_META_COLUMNS",
    "CHEXPERT_OBSERVATIONS",
    "CHEXPERT_COLUMNS",
    "CHEXPERT_COMPETITION_LABELS",
    "CHEXPERT_SEED_LABELS",
    "CHEXPERT_LABEL_SETS",
    "CHEXPERT_LABEL_VALUES",
    "CHEXPERT_POSITIVE",
    "CHEXPERT_NEGATIVE",
    "CHEXPERT_UNCERTAIN",
    "CHEXPERT_SEX_VALUES",
    "CHEXPERT_SEX_MISSING",
    "CHEXPERT_AGE_MISSING",
    "CHEXPERT_FRONTAL",
    "CHEXPERT_LATERAL",
    "CHEXPERT_AP_PA_VALUES",
    "CHEXPERT_PATH_PATTERN",
    "CHEXPERT_IMAGE_PATH",
    "CHEXPERT_VIEWS",
]

# The dataset's folder under the dataset root, and the release folders inside it (either;
# detected, the downsampled copy first).
CHEXPERT_DIR = "chexpert"
CHEXPERT_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")

# Tables of a release folder: the training labels (from the CheXpert labeler, with
# uncertain and blank cells) and the validation labels (radiologists' consensus, 0/1 only).
CHEXPERT_TRAIN_CSV = "train.csv"
CHEXPERT_VALID_CSV = "valid.csv"

# Columns of both tables, in order: five image/patient columns, then the 14 observations.
CHEXPERT_META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
CHEXPERT_OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CHEXPERT_COLUMNS = CHEXPERT_META_COLUMNS + CHEXPERT_OBSERVATIONS

# The 5 observations of the CheXpert competition (Irvin et al. 2019, section "Results").
CHEXPERT_COMPETITION_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# The 12 labels of the seed CheXpert framework this project grows from. Our reading: the 14
# observations minus "No Finding" (the absence of every other finding, not a pathology of
# its own) and "Support Devices" (hardware, not a pathology); the framework's 12 are the 12
# pathologies of the 14 (an assumption, the framework's list was not available to check).
CHEXPERT_SEED_LABELS = tuple(o for o in CHEXPERT_OBSERVATIONS if o not in ("No Finding", "Support Devices"))
# Named label sets a registrar accepts instead of a list of names.
CHEXPERT_LABEL_SETS = {
    "all14": CHEXPERT_OBSERVATIONS,
    "seed12": CHEXPERT_SEED_LABELS,
    "competition5": CHEXPERT_COMPETITION_LABELS,
}

# Observation cells: 1.0 positive, 0.0 negative, -1.0 uncertain; a blank cell means the
# report does not mention the observation (conventionally read as negative).
CHEXPERT_POSITIVE = 1.0
CHEXPERT_NEGATIVE = 0.0
CHEXPERT_UNCERTAIN = -1.0
CHEXPERT_LABEL_VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}

# ``Sex``: Male / Female, or Unknown (missing). ``Age``: years as an integer; 0 = missing.
CHEXPERT_SEX_VALUES = ("Male", "Female", "Unknown")
CHEXPERT_SEX_MISSING = "Unknown"
CHEXPERT_AGE_MISSING = 0

# ``Frontal/Lateral`` values; ``AP/PA`` of frontal images (blank for most laterals).
CHEXPERT_FRONTAL = "Frontal"
CHEXPERT_LATERAL = "Lateral"
CHEXPERT_AP_PA_VALUES = ("AP", "PA", "LL", "RL")

# ``Path`` of a row: <release folder>/<train|valid>/patientNNNNN/studyM/viewK_<frontal|lateral>.jpg
CHEXPERT_PATH_PATTERN = (
    r"^(?P<folder>[^/]+)/(?P<part>train|valid)/(?P<patient>patient\d+)/study(?P<study>\d+)/"
    r"view(?P<view>\d+)_(?P<orientation>frontal|lateral)\.jpg$"
)
# str.format template of ``Path`` (patient five digits, as shipped).
CHEXPERT_IMAGE_PATH = "{folder}/{part}/patient{patient:05d}/study{study}/view{view}_{orientation}.jpg"

# View filters of the registrars: frontal images, frontal AP only, frontal PA only, laterals,
# or every image.
CHEXPERT_VIEWS = ("frontal", "ap", "pa", "lateral", "all")
