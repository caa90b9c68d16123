"""MIMIC-IV-ED and MIMIC-IV (patients) as PhysioNet ships them: paths and columns.

The clinical data of REFLACX images (MDF-Net's: triage vitals, acuity, age, gender) comes
from these tables, joined by subject and time (:mod:`cxr_det.data.clinical.tables`).

Sources:

* MIMIC-IV-ED: Johnson A., Bulgarelli L., Pollard T., Celi L. A., Mark R., Horng S.,
  "MIMIC-IV-ED", PhysioNet, version 1.0 (2021, https://doi.org/10.13026/77z6-9w59), 2.0 (2022,
  https://doi.org/10.13026/as7t-c445) and 2.2 (2023, https://doi.org/10.13026/5ntk-km72);
  https://physionet.org/content/mimic-iv-ed/. Table documentation:
  https://mimic.mit.edu/docs/iv/modules/ed/edstays and .../ed/triage.
* MIMIC-IV: Johnson A., Bulgarelli L., Pollard T., Horng S., Celi L. A., Mark R., "MIMIC-IV",
  PhysioNet, version 1.0 (2021) and 2.x (2.0: 2022, https://doi.org/10.13026/7vcr-e114);
  https://physionet.org/content/mimiciv/. Version 1.0 kept ``patients`` in the ``core``
  module; 2.0 moved it to ``hosp`` (https://mimic.mit.edu/docs/iv/modules/hosp/patients).

Checked on the PhysioNet and mimic.mit.edu pages above (the ``pages`` search corpus): the
versions and DOIs, the edstays and patients columns, and the triage fields. Whether
MIMIC-IV-ED 1.0 named the edstays ``race`` column ``ethnicity`` is unconfirmed (the join
does not read it).

Layout under the dataset root (each table gzipped as shipped, or gunzipped)::

    mimic-iv-ed/ed/edstays.csv.gz
    mimic-iv-ed/ed/triage.csv.gz
    mimic-iv/hosp/patients.csv.gz      (MIMIC-IV 2.x)
    mimic-iv/core/patients.csv.gz      (MIMIC-IV 1.0)

Constants only (standard-library imports): the config module takes its default clinical
features from here.
"""

__all__ = [
    "MIMIC_IV_ED_DIR",
    "MIMIC_IV_DIR",
    "EDSTAYS",
    "TRIAGE",
    "PATIENTS",
    "PATIENTS_MIMIC_IV_1_0",
    "PATIENTS_PATHS",
    "EDSTAYS_COLUMNS",
    "TRIAGE_FIELDS",
    "TRIAGE_COLUMNS",
    "PATIENTS_COLUMNS",
    "ANCHOR_AGE_CAP",
    "MDF_NET_CLINICAL_NUMERIC",
    "MDF_NET_CLINICAL_CATEGORICAL",
]

MIMIC_IV_ED_DIR = "mimic-iv-ed"
MIMIC_IV_DIR = "mimic-iv"

# Tables, relative to the dataset root, as PhysioNet ships them (gzipped).
EDSTAYS = "mimic-iv-ed/ed/edstays.csv.gz"
TRIAGE = "mimic-iv-ed/ed/triage.csv.gz"
PATIENTS = "mimic-iv/hosp/patients.csv.gz"
PATIENTS_MIMIC_IV_1_0 = "mimic-iv/core/patients.csv.gz"
# Where patients is looked for, in order (the 2.x location first).
PATIENTS_PATHS = (PATIENTS, PATIENTS_MIMIC_IV_1_0)

# edstays: one row per ED stay; intime/outtime are "YYYY-MM-DD HH:MM:SS" (shifted dates).
EDSTAYS_COLUMNS = (
    "subject_id",
    "hadm_id",
    "stay_id",
    "intime",
    "outtime",
    "gender",
    "race",
    "arrival_transport",
    "disposition",
)

# triage's measurements, in column order: temperature (degrees F), heartrate (beats/min),
# resprate (breaths/min), o2sat (%), sbp and dbp (mmHg), pain (0..10, free text in the
# source), acuity (Emergency Severity Index 1..5). Values are dirty (see
# cxr_det.data.clinical.cleaning).
TRIAGE_FIELDS = ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity")
# triage: one row per ED stay (no time of its own; the stay's intime is the closest).
TRIAGE_COLUMNS = ("subject_id", "stay_id") + TRIAGE_FIELDS + ("chiefcomplaint",)

# patients: one row per subject; age in a year Y is anchor_age + Y - anchor_year.
PATIENTS_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
# anchor_age of every patient over 89 in anchor_year.
ANCHOR_AGE_CAP = 91

# MDF-Net's clinical features (Hsieh et al., "MDF-Net", Scientific Reports 13:15873, 2023): age and the
# triage measurements (numeric), and gender (categorical). The defaults of cfg.CXR.CLINICAL.
MDF_NET_CLINICAL_NUMERIC = ("age",) + TRIAGE_FIELDS
MDF_NET_CLINICAL_CATEGORICAL = ("gender",)
