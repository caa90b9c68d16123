"""Label rows of the synthetic CheXpert and MIMIC-CXR datasets: which findings a study has,
how its labeler cells read, and how strongly each finding is painted.

The 14 observations are those of the CheXpert labeler (Irvin et al., AAAI 2019), shared
by CheXpert v1.0 and MIMIC-CXR-JPG (:data:`cxr_det.formats.chexpert_format.CHEXPERT_OBSERVATIONS`).
The synthetic rule, per study:

* **Visible findings** (every observation of
  :data:`~cxr_det.synthetic.finding_painters.OBSERVATION_PAINTERS`): a study is normal
  (none of them) with probability :data:`NORMAL_STUDY_PROBABILITY`; otherwise each is
  present independently with its :data:`FINDING_PROBABILITY`. Present findings are painted
  (:func:`paint_strengths`).
* **Atelectasis is clinical-only**: present with probability
  :func:`clinical_only_probability` of the patient's age (0.85 from
  :data:`CLINICAL_ONLY_AGE` = 65 years, 0.08 below), independently of everything else,
  and never painted. Only the clinical record (age) can tell it; an image-only model
  should stay near AUC 0.5 on it. A row with a missing age (CheXpert ``Age`` 0) still had a
  true age that decided the label.
* **Cells** (labeler output, as in CheXpert's ``train.csv`` and MIMIC-CXR-JPG's label
  tables): a present finding reads ``1.0``, or ``-1.0`` (uncertain) with probability
  :data:`UNCERTAIN_FRACTION`; an uncertain finding is painted **faintly**, at
  :data:`FAINT_STRENGTH` of its full intensity (for Atelectasis: not painted, as always).
  An absent finding reads ``0.0`` or is blank (not mentioned) with probability
  :data:`BLANK_FRACTION`; blank means absent. "No Finding" is ``1.0`` when no pathology
  (Support Devices excepted) is present or uncertain, else blank.
* **Expert labels** (CheXpert ``valid.csv``, radiologists' consensus): 0/1 only, present
  findings painted at full strength.

Overall prevalences (present or uncertain) are about 10-35% per observation, "No Finding"
about 20%. How learnable (CheXpert writer, seed 0, 600 patients at 64 px, frontal views,
patient split 80/20, uncertain cells ignored): a logistic regression on 16x16 downsampled
pixels gives held-out AUC 0.96-1.0 on Cardiomegaly, Pleural Effusion, Consolidation and
Edema; a 4-layer CNN (16-64 channels, batch 32, Adam 1e-3) gives 0.95-1.0 on them after 100
iterations and 0.45-0.55 on Atelectasis, which ``Age`` alone predicts with AUC 0.88. The
subtler patterns (Fracture, Pleural Other, Pneumonia, Lung Lesion) are harder at 64 px.
"""
from collections import Counter

from cxr_det.formats.chexpert_format import CHEXPERT_OBSERVATIONS
from cxr_det.synthetic.finding_painters import OBSERVATION_PAINTERS

__all__ = [
    "CLINICAL_ONLY_LABEL",
    "CLINICAL_ONLY_AGE",
    "NORMAL_STUDY_PROBABILITY",
    "FINDING_PROBABILITY",
    "UNCERTAIN_FRACTION",
    "BLANK_FRACTION",
    "FAINT_STRENGTH",
    "clinical_only_probability",
    "sample_study_labels",
    "cell_text",
    "paint_strengths",
    "label_counts",
]

#: The label told apart only by the clinical record (never painted).
CLINICAL_ONLY_LABEL = "Atelectasis"
#: Age (years) from which the clinical-only label is likely.
CLINICAL_ONLY_AGE = 65
_P_OLD, _P_YOUNG = 0.85, 0.08

NORMAL_STUDY_PROBABILITY = 0.3
#: Probability that each visible finding is present in a study that is not normal.
FINDING_PROBABILITY = {
    "Enlarged Cardiomediastinum": 0.22,
    "Cardiomegaly": 0.4,
    "Lung Opacity": 0.28,
    "Lung Lesion": 0.2,
    "Edema": 0.32,
    "Consolidation": 0.32,
    "Pneumonia": 0.2,
    "Pneumothorax": 0.18,
    "Pleural Effusion": 0.4,
    "Pleural Other": 0.18,
    "Fracture": 0.18,
    "Support Devices": 0.3,
}
UNCERTAIN_FRACTION = 0.2
BLANK_FRACTION = 0.6
FAINT_STRENGTH = 0.5
_NO_FINDING = "No Finding"
_NOT_PATHOLOGY = (_NO_FINDING, "Support Devices")


def clinical_only_probability(age):
    """Probability (0..1) that the clinical-only label (Atelectasis) is present at ``age`` years."""
    return _P_OLD if float(age) >= CLINICAL_ONLY_AGE else _P_YOUNG


def sample_study_labels(rng, age, expert=False):
    """Label values of one study: ``{observation: 1.0 | -1.0 | 0.0 | None}`` (None = blank).

    Args:
        rng: numpy Generator; draws a fixed number of values (3 x 14 + 1) whatever the outcome.
        age: the patient's true age in years (decides the clinical-only label).
        expert: radiologists' labels (``valid.csv``): 1.0 / 0.0 only, no blanks.

    Returns:
        a dict over :data:`~cxr_det.formats.chexpert_format.CHEXPERT_OBSERVATIONS`, in that order.
    """
    normal = rng.random() < NORMAL_STUDY_PROBABILITY
    present_u, uncertain_u, blank_u = rng.random((3, len(CHEXPERT_OBSERVATIONS)))
    values = {}
    for k, name in enumerate(CHEXPERT_OBSERVATIONS):
        if name == _NO_FINDING:
            continue
        if name == CLINICAL_ONLY_LABEL:
            present = present_u[k] < clinical_only_probability(age)
        else:
            present = not normal and present_u[k] < FINDING_PROBABILITY[name]
        if expert:
            values[name] = 1.0 if present else 0.0
        elif present:
            values[name] = -1.0 if uncertain_u[k] < UNCERTAIN_FRACTION else 1.0
        else:
            values[name] = None if blank_u[k] < BLANK_FRACTION else 0.0
    sick = any(values[n] in (1.0, -1.0) for n in values if n not in _NOT_PATHOLOGY)
    values[_NO_FINDING] = 0.0 if sick and expert else (None if sick else 1.0)
    return {name: values[name] for name in CHEXPERT_OBSERVATIONS}


def cell_text(value):
    """A label value as the CSV cell reads: ``"1.0"``, ``"0.0"``, ``"-1.0"`` or ``""`` (blank)."""
    return "" if value is None else f"{float(value):.1f}"


def paint_strengths(values):
    """``{observation: strength}`` to paint from label values: 1 present, :data:`FAINT_STRENGTH`
    uncertain; absent, blank and unpainted observations are left out."""
    out = {}
    for name, value in values.items():
        if name in OBSERVATION_PAINTERS and value in (1.0, -1.0):
            out[name] = 1.0 if value == 1.0 else FAINT_STRENGTH
    return out


_KINDS = {"1.0": "positive", "0.0": "negative", "-1.0": "uncertain", "": "blank"}


def label_counts(rows, names, first_column):
    """``{observation: {"positive", "negative", "uncertain", "blank"}}`` cell counts of CSV rows.

    ``rows``: lists of cell texts (as :func:`cell_text` writes them) whose label cells
    start at index ``first_column`` and follow ``names``' order.
    """
    counts = {name: Counter(dict.fromkeys(_KINDS.values(), 0)) for name in names}
    for row in rows:
        for name, cell in zip(names, row[first_column:]):
            counts[name][_KINDS[cell]] += 1
    return {name: dict(c) for name, c in counts.items()}
