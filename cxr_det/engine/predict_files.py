"""``tools/predict.py``'s work: clinical inputs checked for a set of image files, then each
file predicted and written as JSON and an annotated PNG.

The pieces it joins are in :mod:`cxr_det.engine.inference` (inputs, the clinical CSV/JSON
reader :func:`~cxr_det.engine.inference.load_clinical_inputs`, which reads CSVs with the
package's one clinical CSV reader, and the per-image record whose image-level scores come
from :func:`cxr_det.evaluation.image_level.image_scores`) and
:mod:`cxr_det.utils.drawing_files` (the PNG).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from cxr_det.data.image_io import read_image, read_options_from_config
from cxr_det.engine.inference import (
    InputImage,
    check_clinical_record,
    dicom_clinical_record,
    output_stems,
    prediction_record,
    unknown_clinical_fields,
)
from cxr_det.utils.atomic import atomic_write_json
from cxr_det.utils.drawing_files import prediction_drawing, write_png

__all__ = ["ClinicalCheck", "check_clinical_inputs", "predict_files", "read_input", "write_outputs", "report_lines",
           "input_problem_lines"]

logger = logging.getLogger(__name__)


@dataclass
class ClinicalCheck:
    """What is wrong with the clinical inputs of a set of images.

    Attributes:
        file_problems: messages about the file as a whole (unknown fields / columns).
        problems: ``{image key: [messages]}`` for records with missing, unparseable,
            implausible or unknown values.
        fields: the field names the file gives (CSV columns / JSON keys), sorted.
    """

    file_problems: List[str] = field(default_factory=list)
    problems: Dict[str, List[str]] = field(default_factory=dict)
    fields: List[str] = field(default_factory=list)


def check_clinical_inputs(images: Sequence[InputImage], clinical: Dict[str, Optional[dict]],
                          table: Dict[str, dict], single: Optional[dict], featurizer, *,
                          given: bool, from_dicom: bool) -> ClinicalCheck:
    """Check every image's clinical record against the model's features.

    Args:
        images: the inputs (:func:`~cxr_det.engine.inference.find_inputs`).
        clinical: ``{image key: raw record or None}`` (:func:`~cxr_det.engine.inference.match_clinical`).
        table, single: :func:`~cxr_det.engine.inference.load_clinical_inputs`' output.
        featurizer: the model's clinical featurizer; None: nothing to check.
        given: whether a clinical file was given.
        from_dicom: the model reads age and sex from DICOM headers (``CXR.CLINICAL.SOURCE
            dicom``); images without a record are checked after their header is read
            (:func:`predict_files`), and without a file only those checks count.

    Returns:
        :class:`ClinicalCheck` (empty when ``featurizer`` is None).
    """
    check = ClinicalCheck()
    if featurizer is None:
        return check
    check.fields = sorted({f for record in table.values() for f in record}) if table else sorted(single or {})
    check.file_problems = unknown_clinical_fields(check.fields, featurizer)
    for image in images:
        record = clinical[image.key]
        if from_dicom and record is None:
            continue  # read from the DICOM header while predicting; checked there
        found = check_clinical_record(record, featurizer, fields=False)
        if found and (given or not from_dicom):
            check.problems[image.key] = found
    return check


def predict_files(predictor, cfg, images: Sequence[InputImage], clinical: Dict[str, Optional[dict]],
                  problems: Dict[str, List[str]], class_names: Sequence[str], output_dir: str, *,
                  conf_threshold: float, max_drawn: int = 20, from_dicom: bool = False):
    """Predict each image and write ``<output_dir>/<key without suffix>.json`` and ``.png``.

    Args:
        predictor: a :class:`~cxr_det.engine.predictor.CXRPredictor`.
        cfg: its config (``INPUT.FORMAT`` and the image reading options).
        images: the inputs; clinical: ``{key: raw record or None}``.
        problems: ``{key: messages}`` from :func:`check_clinical_inputs`; updated in place
            (unreadable files removed, DICOM header records checked).
        class_names: the model's classes; conf_threshold: the score cut (in the PNG title).
        max_drawn: boxes drawn per image at most, best first (the JSON has all).
        from_dicom: merge ``{"age", "gender"}`` from each DICOM header under the given record.

    Returns:
        ``(records, skipped)``: the JSON record of each predicted image
        (:func:`~cxr_det.engine.inference.prediction_record`), and ``{key: why}`` for the
        files that could not be read (skipped, counted, logged).
    """
    featurizer = predictor.clinical_featurizer
    stems = output_stems(output_dir, [image.key for image in images])
    everything, skipped = [], {}
    for image in tqdm(images, desc="predicting"):
        read = read_input(image, cfg.INPUT.FORMAT, read_options_from_config(cfg), clinical[image.key], featurizer,
                          problems, skipped, from_dicom=from_dicom)
        if read is None:
            continue
        pixels, record = read
        instances = predictor(pixels, record)["instances"].to("cpu")
        result = prediction_record(image.key, instances, class_names, pixels.shape[0], pixels.shape[1],
                                   record, problems.get(image.key, ()), featurizer)
        everything.append(result)
        stem = stems[image.key]
        atomic_write_json(stem + ".json", result, indent=2, default=str, allow_nan=False)
        rgb = pixels[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else (pixels.repeat(3, 2) if pixels.shape[2] == 1 else pixels)
        drawn = prediction_drawing(rgb, result, class_names, image.key, conf_threshold, max_drawn)
        write_png(stem + ".png", drawn)
    return everything, skipped


def read_input(image: InputImage, image_format: str, read_options: dict, record: Optional[dict], featurizer,
               problems: Dict[str, List[str]], skipped: Dict[str, str], *, from_dicom: bool = False):
    """One input's pixels and clinical record for prediction, or None for an unreadable file.

    Args:
        image: the input; image_format: ``INPUT.FORMAT`` of the pixels; read_options:
            :func:`~cxr_det.data.image_io.read_options_from_config`.
        record: its raw clinical record or None; featurizer: the model's (or None).
        problems: ``{key: messages}``, updated (an unreadable file's removed, a DICOM header
            record checked); skipped: ``{key: why}``, where an unreadable file is added.
        from_dicom: merge ``{"age", "gender"}`` from a DICOM header under ``record``.

    Returns:
        ``(pixels HxWxC uint8, record)`` or None (the file skipped, named and logged).
    """
    try:
        pixels = read_image(image.path, image_format, **read_options)
    except Exception as e:  # noqa: BLE001 - a bad file is skipped, named and counted
        skipped[image.key] = f"{type(e).__name__}: {e}"
        problems.pop(image.key, None)
        logger.warning(f"{image.path}: skipped ({e})")
        return None
    if from_dicom:
        header = dicom_clinical_record(image.path)
        if header is not None:
            record = {**header, **(record or {})}
        found = check_clinical_record(record, featurizer, fields=False)
        if found:
            problems[image.key] = found
    return pixels, record


def write_outputs(output_dir: str, images: Sequence[InputImage], records: Sequence[dict], skipped: Dict[str, str],
                  check: ClinicalCheck, unmatched: Sequence[str]) -> dict:
    """Write ``predictions.json`` (every image's record) and ``summary.json`` into ``output_dir``.

    Returns:
        the summary: ``{"images", "predicted", "skipped" {key: why}, "clinical_file_problems",
        "clinical_problems" {key: [messages]}, "clinical_unmatched" [table keys]}``.

    Raises:
        ValueError: a record holds NaN or infinity (JSON without them is written).
    """
    atomic_write_json(os.path.join(output_dir, "predictions.json"), list(records), indent=2, default=str,
                      allow_nan=False)
    summary = {"images": len(images), "predicted": len(records), "skipped": skipped,
               "clinical_file_problems": check.file_problems, "clinical_problems": check.problems,
               "clinical_unmatched": list(unmatched)}
    atomic_write_json(os.path.join(output_dir, "summary.json"), summary, indent=2)
    return summary


def report_lines(summary: dict, records: Sequence[dict], output_dir: str, conf_threshold: float,
                 clinical_file: str = "") -> List[str]:
    """What ``tools/predict.py`` prints at the end: counts, images without a finding at
    ``conf_threshold``, skipped files, clinical problems of the file and of the first 10 images."""
    lines = [f"{summary['predicted']} of {summary['images']} image(s) predicted: JSON + annotated PNG in {output_dir}"]
    empty = sum(not r["instances"] for r in records)
    if empty:
        lines.append(f"{empty} image(s) have no finding scoring >= {conf_threshold} (--conf-threshold sets the cut)")
    return lines + input_problem_lines(summary, clinical_file)


def input_problem_lines(summary: dict, clinical_file: str = "") -> List[str]:
    """The end of ``tools/predict.py``'s report, detection or classification: skipped files,
    clinical problems of the file and of the first 10 images (:func:`write_outputs`' summary)."""
    lines = []
    skipped = summary["skipped"]
    if skipped:
        lines.append(f"{len(skipped)} file(s) skipped (unreadable):")
        lines += [f"  {key}: {why}" for key, why in skipped.items()]
    lines += [f"--clinical {clinical_file}: {problem}" for problem in summary["clinical_file_problems"]]
    problems = summary["clinical_problems"]
    if problems:
        lines.append(f"clinical input problems in {len(problems)} image(s) (see summary.json; --strict makes them errors):")
        lines += [f"  {key}: {'; '.join(found)}" for key, found in list(problems.items())[:10]]
    return lines
