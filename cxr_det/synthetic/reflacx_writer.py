"""Synthetic REFLACX readings over MIMIC-CXR-JPG images (+ MIMIC-CXR DICOMs).

Writes the files the real datasets ship, in their layouts (see docs/CONTRACT.md and the
shared dataset notes): REFLACX metadata and per-reading folders (ellipses, chest box,
fixations, gaze, transcription), and the JPG images (optionally DICOMs) in MIMIC-CXR's
``files/pXX/p<subject>/s<study>/<dicom_id>`` tree. The MIMIC-CXR-JPG metadata and the
clinical tables ``edstays``, ``triage`` and ``patients`` come from :mod:`.mimic_writer`.
Source of the layout: REFLACX v1.0.0 (Bigolin Lanfredi et al., Scientific Data 2022;
https://physionet.org/content/reflacx-xray-localization/1.0.0/).

The images hold the true lesions; every REFLACX reading is a noisy view of them (boxes
jittered, a lesion sometimes missed or given a second label, phase-1 label names in
phase 1). Consolidation and pulmonary edema are painted identically; which one an
image has is told only by the patient's clinical state at the time of the study
(febrile/infective versus cardiac), which the triage vitals and age carry.

One file, a little over 400 lines: the per-image state, the readings drawn from it and the
per-reading files share one random stream in a fixed order (the generator's output is
byte-stable across versions), so splitting them would only pass that stream around.
"""
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cxr_det.formats.mimic_cxr_format import (
    MIMIC_CXR_DICOM_DIR,
    MIMIC_CXR_IMAGE_SUFFIXES,
    MIMIC_CXR_JPG_DIR,
    MIMIC_CXR_SPLITS,
)
from cxr_det.formats.mimic_iv_ed_format import MIMIC_IV_DIR, MIMIC_IV_ED_DIR
from cxr_det.formats.reflacx_format import (
    REFLACX_CHEST_BOX_COLUMNS,
    REFLACX_CHEST_BOX_FILE,
    REFLACX_DIR,
    REFLACX_ELLIPSE_COLUMNS,
    REFLACX_ELLIPSE_FILE,
    REFLACX_FIXATIONS_COLUMNS,
    REFLACX_FIXATIONS_FILE,
    REFLACX_GAZE_COLUMNS,
    REFLACX_GAZE_DIR,
    REFLACX_GAZE_FILE,
    REFLACX_IMAGE_PREFIX,
    REFLACX_LABELS_BY_PHASE,
    REFLACX_LESION_LABELS,
    REFLACX_MAIN_DIR,
    REFLACX_METADATA,
    REFLACX_METADATA_COLUMNS,
    REFLACX_PHASE1_LABELS,
    REFLACX_PHASE1_TO_LABEL,
    REFLACX_PHASES,
    REFLACX_TIMESTAMPS_COLUMNS,
    REFLACX_TIMESTAMPS_FILE,
    REFLACX_TRANSCRIPTION_FILE,
)
from cxr_det.synthetic import render
from cxr_det.synthetic.dataset_writer import DatasetWriter, unique_ints
from cxr_det.synthetic.mimic_writer import image_path, new_dicom_id, write_clinical_tables

__all__ = ["make_reflacx"]

logger = logging.getLogger(__name__)

# Relative frequency of each true lesion class; "_patchy" becomes Consolidation or
# Pulmonary edema according to the patient's state.
_LESION_WEIGHTS = {
    "Enlarged cardiac silhouette": 3.0,
    "Atelectasis": 3.0,
    "Pleural abnormality": 3.0,
    "_patchy": 6.0,
    "Abnormal mediastinal contour": 1.0,
    "Acute fracture": 1.0,
    "Enlarged hilum": 1.0,
    "Groundglass opacity": 1.0,
    "Hiatal hernia": 1.0,
    "High lung volume / emphysema": 1.0,
    "Interstitial lung disease": 1.0,
    "Lung nodule or mass": 1.0,
    "Pneumothorax": 1.0,
}
# Lesions without a phase-1 label name (Enlarged hilum, Hiatal hernia, Interstitial lung
# disease) are not drawn on phase-1 images.
_NO_PHASE1_NAME = tuple(
    label
    for label in REFLACX_LESION_LABELS
    if label not in REFLACX_PHASE1_LABELS and label not in REFLACX_PHASE1_TO_LABEL.values()
)
_PHASE1_NAMES = {}
for _old, _new in REFLACX_PHASE1_TO_LABEL.items():
    _PHASE1_NAMES.setdefault(_new, []).append(_old)

# Second labels a reader sometimes adds to the same ellipse.
_SECOND_LABEL = {
    "Consolidation": "Atelectasis",
    "Pulmonary edema": "Atelectasis",
    "Pleural abnormality": "Atelectasis",
    "Enlarged cardiac silhouette": "Abnormal mediastinal contour",
    "Atelectasis": None,  # the image's air-space label if any, else Pleural abnormality
}

_PHRASES = {
    "Enlarged cardiac silhouette": "The cardiac silhouette is enlarged.",
    "Atelectasis": "Linear opacity compatible with atelectasis.",
    "Pleural abnormality": "There is a pleural effusion.",
    "Pleural effusion": "There is a pleural effusion.",
    "Pleural thickening": "Pleural thickening is seen.",
    "Consolidation": "Patchy airspace opacity concerning for consolidation.",
    "Pulmonary edema": "Patchy airspace opacity compatible with pulmonary edema.",
    "Pneumothorax": "There is a pneumothorax.",
    "Support devices": "Support devices in place.",
}
_OTHER_TEXT = ("calcified granuloma", "degenerative changes of the spine", "surgical clips", "old healed rib fracture", "scoliosis")


@dataclass
class _Image:
    index: int
    subject_id: int
    study_id: int
    dicom_id: str
    phase: int
    state: str  # "infective" | "cardiac" | "neutral"
    planned: list
    split: str = ""
    height: int = 0
    width: int = 0
    lesions: list = field(default_factory=list)  # [(label, box)]
    device_box: tuple = None
    thorax_box: tuple = None
    study_dt: datetime = None
    view: str = "PA"
    scale: float = 1.0
    readings: list = field(default_factory=list)


def _sample_lesions(rng, phase, normal):
    """True lesion labels of one image and the patient's state."""
    if normal:
        return [], "neutral"
    names = [k for k in _LESION_WEIGHTS if not (phase == 1 and k in _NO_PHASE1_NAME)]
    weights = np.array([_LESION_WEIGHTS[k] for k in names])
    k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    chosen = [names[i] for i in rng.choice(len(names), size=k, replace=False, p=weights / weights.sum())]
    state = "neutral"
    labels = []
    for name in chosen:
        if name == "_patchy":
            label = "Consolidation" if rng.random() < 0.5 else "Pulmonary edema"
            state = "infective" if label == "Consolidation" else "cardiac"
            labels += [label] * (2 if rng.random() < 0.3 else 1)
        else:
            labels.append(name)
    return labels, state


def _phase_name(rng, label, box, phase, scale):
    """The name a reader of ``phase`` gives to a lesion of (phase-2/3) class ``label``."""
    if phase != 1 or label not in _PHASE1_NAMES:
        return label
    if label == "Lung nodule or mass":
        return "Mass" if max(box[2] - box[0], box[3] - box[1]) > 50 * scale else "Nodule"
    if label == "Pleural abnormality":
        return "Pleural effusion" if rng.random() < 0.75 else "Pleural thickening"
    return _PHASE1_NAMES[label][0]


def _reader_box(rng, box, width, height, scale, overflow_p):
    """A reader's ellipse box around a true box: jittered, slightly enlarged, rarely past the border."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    jit = rng.uniform(0.05, 0.1)
    ex0 = x0 - 0.03 * w + rng.normal(0, jit * w)
    ex1 = x1 + 0.03 * w + rng.normal(0, jit * w)
    ey0 = y0 - 0.03 * h + rng.normal(0, jit * h)
    ey1 = y1 + 0.03 * h + rng.normal(0, jit * h)
    ex0, ex1 = sorted((ex0, ex1))
    ey0, ey1 = sorted((ey0, ey1))
    ex0, ey0 = max(0.0, ex0), max(0.0, ey0)
    ex1, ey1 = min(width - 1.0, max(ex1, ex0 + 4)), min(height - 1.0, max(ey1, ey0 + 4))
    overflow = False
    # Real quirk: an ellipse drawn a little past the border of the image.
    gaps = {"x0": ex0, "y0": ey0, "x1": width - 1 - ex1, "y1": height - 1 - ey1}
    side = min(gaps, key=gaps.get)
    limit = 0.15 * (width if side[0] == "x" else height)
    if gaps[side] < limit and rng.random() < overflow_p:
        past = rng.uniform(1, 12) * scale
        if side == "x0":
            ex0 = -past
        elif side == "y0":
            ey0 = -past
        elif side == "x1":
            ex1 = width - 1 + past
        else:
            ey1 = height - 1 + past
        overflow = True
    return [int(round(ex0)), int(round(ey0)), int(round(ex1)), int(round(ey1))], overflow


def make_reflacx(out, n_images, seed, size=512, write_dicom=False, gzip_tables=True) -> dict:
    """Write a synthetic REFLACX dataset with its MIMIC images and clinical tables under ``out``.

    ``n_images`` distinct chest X-rays (>= 5); about 5% go to phase 1 and 5% to phase 2
    (at least 2 each, 5 readings per image), the rest to phase 3 (one reading each).
    ``size``: nominal image side in pixels (each image's sides vary 0.85-1.15x).
    ``write_dicom``: also write the MIMIC-CXR DICOMs (same pixels, 12-bit).
    ``gzip_tables``: write the MIMIC tables (``mimic-cxr-2.0.0-metadata``, ``edstays``,
    ``triage``, ``patients``) as ``.csv.gz``, as PhysioNet ships them; False writes ``.csv``
    (what a user who gunzipped them has). The content is the same either way.
    Deterministic in ``seed``. Returns a summary dict (counts per split/class, files written).
    """
    n = int(n_images)
    if n < 5:
        raise ValueError(f"make_reflacx needs at least 5 images, got {n}")
    out = Path(out)
    writer = DatasetWriter(out)
    subdirs = [REFLACX_DIR, MIMIC_CXR_JPG_DIR, MIMIC_IV_ED_DIR, MIMIC_IV_DIR] + ([MIMIC_CXR_DICOM_DIR] if write_dicom else [])
    writer.claim(*subdirs)
    rng = np.random.default_rng([int(seed), 0])

    # Subjects (some with two studies), splits per subject, phases per image.
    n_subjects = max(1, int(round(n * 0.85)))
    subject_ids = unique_ints(rng, n_subjects, 10_000_000, 20_000_000)
    owner = list(range(n_subjects)) + [int(i) for i in rng.integers(0, n_subjects, size=n - n_subjects)]
    perm = [int(i) for i in rng.permutation(n_subjects)]
    n_train, n_val = int(round(0.6 * n_subjects)), int(round(0.2 * n_subjects))
    if n_subjects >= 3:
        n_train, n_val = min(max(1, n_train), n_subjects - 2), max(1, n_val)
        n_val = min(n_val, n_subjects - n_train - 1)
    train, validate, test = MIMIC_CXR_SPLITS  # REFLACX's split column copies MIMIC-CXR's
    subject_split = {}
    for rank, s in enumerate(perm):
        subject_split[subject_ids[s]] = train if rank < n_train else (validate if rank < n_train + n_val else test)
    n1 = max(2, int(round(0.05 * n)))
    n2 = max(2, int(round(0.05 * n)))
    phase_of = np.full(n, 3)
    order = rng.permutation(n)
    phase_of[order[:n1]] = 1
    phase_of[order[n1 : n1 + n2]] = 2

    study_ids = unique_ints(rng, n, 50_000_000, 60_000_000)
    normal_set = {int(i) for i in rng.permutation(n)[: int(round(0.1 * n))]}
    dicom_taken = set()
    images = []
    for i in range(n):
        labels, state = _sample_lesions(rng, int(phase_of[i]), i in normal_set)
        img = _Image(
            index=i,
            subject_id=subject_ids[owner[i]],
            study_id=study_ids[i],
            dicom_id=new_dicom_id(rng, dicom_taken),
            phase=int(phase_of[i]),
            state=state,
            planned=labels,
        )
        img.split = subject_split[img.subject_id]
        img.view = "PA" if rng.random() < 0.6 else "AP"
        images.append(img)
    with_device = [bool(im.planned) and rng.random() < 0.12 for im in images]

    # Images: rendered with a per-image generator, so pixels do not depend on table code.
    for im, device in zip(images, with_device):
        irng = np.random.default_rng([int(seed), 1, im.index])
        plan = list(im.planned) + (["Support devices"] if device else [])
        pixels, anat, placed = render.render_image(irng, size, plan)
        im.height, im.width = pixels.shape
        im.thorax_box = anat.thorax_box
        for label, box in placed:
            if label == "Support devices":
                im.device_box = box
            else:
                im.lesions.append((label, box))
        if not any(l in ("Consolidation", "Pulmonary edema") for l, _ in im.lesions):
            im.state = "neutral"  # the air-space lesion could not be placed
        im.scale = anat.scale
        u8 = render.to_uint8(pixels)
        writer.jpg(f"{MIMIC_CXR_JPG_DIR}/{image_path(im, MIMIC_CXR_IMAGE_SUFFIXES['jpg'])}", u8)
        if write_dicom:
            writer.dicom(
                f"{MIMIC_CXR_DICOM_DIR}/{image_path(im, MIMIC_CXR_IMAGE_SUFFIXES['dicom'])}",
                u8.astype(np.uint16) * 16,
                bits_stored=12,
                photometric="MONOCHROME2",
                uid_key=im.dicom_id,
                window=(2040.0, 4080.0),
                patient_id=str(im.subject_id),
                view_position=im.view,
            )

    # Readings.
    reading_taken = set()
    metadata = {phase: [] for phase in REFLACX_PHASES}
    phase_labels = {phase: sorted(REFLACX_LABELS_BY_PHASE[phase]) for phase in REFLACX_PHASES}
    ellipse_rows_per_label = Counter()
    n_overflow = n_rows = 0
    for im in images:
        readers = [1, 2, 3, 4, 5] if im.phase in (1, 2) else [int(rng.integers(1, 6))]
        look_alike = next((l for l, _ in im.lesions if l in ("Consolidation", "Pulmonary edema")), None)
        for reader in readers:
            number = unique_ints(rng, 1, 100_000, 1_000_000, reading_taken)[0]
            rid = f"P{im.phase}{reader:02d}R{number}" if im.phase in (1, 2) else f"P300R{number}"
            labels = phase_labels[im.phase]
            rows = []
            for label, box in im.lesions:
                if rng.random() < 0.1:
                    continue  # reader missed it
                names = [label]
                if label in _SECOND_LABEL and rng.random() < 0.15:
                    second = _SECOND_LABEL[label] or look_alike or "Pleural abnormality"
                    if second != label:
                        names.append(second)
                names = [_phase_name(rng, nm, box, im.phase, im.scale) for nm in names]
                ebox, over = _reader_box(rng, box, im.width, im.height, im.scale, overflow_p=0.09)
                certainty = int(rng.choice([1, 2, 3, 4, 5], p=[0.05, 0.1, 0.2, 0.3, 0.35]))
                rows.append((ebox, certainty, names))
                n_overflow += over
            marks_device = im.device_box is not None and rng.random() < 0.85
            if marks_device:
                ebox, _ = _reader_box(rng, im.device_box, im.width, im.height, im.scale, overflow_p=0.0)
                rows.append((ebox, 5, ["Support devices"]))
            n_rows += len(rows)
            best = {}
            csv_rows = []
            for ebox, certainty, names in rows:
                for nm in names:
                    best[nm] = max(best.get(nm, 0), certainty)
                    ellipse_rows_per_label[nm] += 1
                csv_rows.append(ebox + [certainty] + [str(lab in names) for lab in labels])
            writer.csv(f"{REFLACX_MAIN_DIR}/{rid}/{REFLACX_ELLIPSE_FILE}", list(REFLACX_ELLIPSE_COLUMNS) + labels, csv_rows)
            _write_reading_extras(writer, rng, rid, im, rows)

            discarded = rng.random() < 0.1
            cells = []
            for lab in labels:
                if lab == "Support devices":
                    cells.append(str(marks_device))
                elif lab == "Quality issue":
                    cells.append(str(rng.random() < 0.04))
                elif lab == "Other":
                    cells.append(str(rng.choice(_OTHER_TEXT)) if rng.random() < 0.06 else "")
                elif lab in best:
                    cells.append(str(best[lab]))
                else:
                    cells.append("0" if im.phase == 1 else "")
            dicom_path = REFLACX_IMAGE_PREFIX + image_path(im, MIMIC_CXR_IMAGE_SUFFIXES["dicom"])
            metadata[im.phase].append(
                [rid, im.split, str(discarded), dicom_path, im.dicom_id, im.subject_id, im.width, im.height] + cells
            )
            im.readings.append(rid)
    for phase in REFLACX_PHASES:
        head = list(REFLACX_METADATA_COLUMNS) + phase_labels[phase]
        writer.csv(f"{REFLACX_MAIN_DIR}/{REFLACX_METADATA.format(phase=phase)}", head, metadata[phase])

    clinical = write_clinical_tables(writer, rng, images, gzip_tables)

    per_split = Counter(im.split for im in images)
    lesions = Counter(l for im in images for l, _ in im.lesions)
    summary = {
        "format": "reflacx",
        "root": str(out),
        "images": n,
        "readings": sum(len(m) for m in metadata.values()),
        "files_written": writer.files,
        "images_per_split": {k: per_split.get(k, 0) for k in MIMIC_CXR_SPLITS},
        "images_per_phase": {p: int((phase_of == p).sum()) for p in REFLACX_PHASES},
        "normal_images": sum(1 for im in images if not im.lesions),
        "lesions_per_class": dict(sorted(lesions.items())),
        "annotations_per_class": dict(sorted(ellipse_rows_per_label.items())),
        "ellipses_past_border": n_overflow,
        "ellipse_rows": n_rows,
        **clinical,
    }
    logger.info("synthetic REFLACX: %d images, %d readings, %d files under %s", n, summary["readings"], writer.files, out)
    return summary


def _write_reading_extras(writer, rng, rid, im, rows):
    """chest box, fixations, transcription (+ word timestamps) and gaze of one reading."""
    W, H = im.width, im.height
    tb = im.thorax_box
    chest = [int(round(tb[0] + rng.normal(0, 4))), int(round(tb[1] + rng.normal(0, 4))), int(round(tb[2] + rng.normal(0, 4))), int(round(tb[3] + rng.normal(0, 4)))]
    chest = [max(0, min(W - 1, chest[0])), max(0, min(H - 1, chest[1])), max(0, min(W - 1, chest[2])), max(0, min(H - 1, chest[3]))]
    writer.csv(f"{REFLACX_MAIN_DIR}/{rid}/{REFLACX_CHEST_BOX_FILE}", REFLACX_CHEST_BOX_COLUMNS, [chest])

    shown = [0, 0, W - 1, H - 1, 0, 0, 1919, 1079]
    t = 0.0
    fix = []
    for _ in range(int(rng.integers(5, 11))):
        start = t + rng.uniform(0.05, 0.3)
        end = start + rng.uniform(0.1, 0.6)
        t = end
        fix.append([f"{start:.3f}", f"{end:.3f}", f"{rng.uniform(chest[0], chest[2]):.1f}", f"{rng.uniform(chest[1], chest[3]):.1f}", f"{rng.uniform(0.2, 0.6):.4f}", "40.5", "40.5", "0.5", "1.0"] + shown)
    writer.csv(f"{REFLACX_MAIN_DIR}/{rid}/{REFLACX_FIXATIONS_FILE}", REFLACX_FIXATIONS_COLUMNS, fix)

    names = [nm for _, _, names in rows for nm in names[:1]]
    sentences = [_PHRASES.get(nm, f"Findings of {nm.lower()}.") for nm in dict.fromkeys(names)]
    text = " ".join(sentences) if sentences else "No acute cardiopulmonary process."
    writer.text(f"{REFLACX_MAIN_DIR}/{rid}/{REFLACX_TRANSCRIPTION_FILE}", text)
    words, clock = [], t + 0.5
    for word in text.split():
        start = clock + rng.uniform(0.02, 0.15)
        end = start + 0.05 + 0.06 * len(word)
        clock = end
        words.append([word, f"{start:.3f}", f"{end:.3f}"])
    writer.csv(f"{REFLACX_MAIN_DIR}/{rid}/{REFLACX_TIMESTAMPS_FILE}", REFLACX_TIMESTAMPS_COLUMNS, words)

    gaze = []
    for k in range(int(rng.integers(5, 11))):
        gaze.append([f"{k / 60:.4f}", f"{rng.uniform(0, W):.1f}", f"{rng.uniform(0, H):.1f}", f"{rng.uniform(0.2, 0.6):.4f}", "40.5", "40.5", "0.5", "1.0"] + shown)
    writer.csv(f"{REFLACX_GAZE_DIR}/{rid}/{REFLACX_GAZE_FILE}", REFLACX_GAZE_COLUMNS, gaze)
