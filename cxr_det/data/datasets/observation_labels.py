"""CheXpert-labeler observations -> ``labels`` / ``label_weights`` arrays, shared by the
CheXpert and MIMIC-CXR-JPG registrars.

Both datasets label 14 observations per image (CheXpert ``train.csv``) or per study
(MIMIC-CXR-JPG ``mimic-cxr-2.0.0-{chexpert,negbio}.csv``) with 1.0 positive, 0.0 negative,
-1.0 uncertain and a blank cell for "not mentioned" (Irvin et al., AAAI 2019; the value
constants are in :mod:`cxr_det.formats.chexpert_format`). This module holds the policy that
turns those cells into training targets, vectorised over the whole table:

* a label set: a list of observation names or one of the names of
  :data:`~cxr_det.formats.chexpert_format.CHEXPERT_LABEL_SETS` (``"all14"``, ``"seed12"``,
  ``"competition5"``);
* an uncertainty policy per label, named after the CheXpert paper's approaches:
  ``"zeros"`` (U-Zeros: uncertain -> 0), ``"ones"`` (U-Ones: uncertain -> 1), ``"ignore"``
  (U-Ignore: target 0 with weight 0, so it counts in neither the loss nor the metrics);
* blanks are negatives (target 0, weight 1);
* any other cell value is a :class:`DatasetFormatError` naming the file, line and column.
"""
import logging

import numpy as np
import pandas as pd

from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.formats.chexpert_format import CHEXPERT_LABEL_SETS, CHEXPERT_OBSERVATIONS

__all__ = [
    "UNCERTAINTY_POLICIES",
    "resolve_label_set",
    "resolve_uncertainty",
    "observation_arrays",
    "prevalence",
    "prevalence_gaps",
    "warn_prevalence_gaps",
]

logger = logging.getLogger(__name__)

# What an uncertain (-1.0) cell becomes: (target, weight).
UNCERTAINTY_POLICIES = {"zeros": (0.0, 1.0), "ones": (1.0, 1.0), "ignore": (0.0, 0.0)}
# A dict policy may give this key for the labels it does not name.
DEFAULT_KEY = "default"
_VALID_VALUES = (1.0, 0.0, -1.0)


def resolve_label_set(labels, available=CHEXPERT_OBSERVATIONS, dataset="CheXpert"):
    """The label names selected by ``labels``, as a list in the order given.

    Args:
        labels: a name of :data:`CHEXPERT_LABEL_SETS` (``"all14"``, ``"seed12"``,
            ``"competition5"``), ``"all"`` (= ``"all14"``), or a list/tuple of observation
            names (exact spellings, e.g. ``"Pleural Effusion"``).
        available: the observations the table has.

    Raises:
        ValueError: an unknown set name or observation (the message lists the valid ones),
            duplicates, or an empty list.
    """
    if isinstance(labels, str):
        key = "all14" if labels == "all" else labels
        if key not in CHEXPERT_LABEL_SETS:
            raise ValueError(
                f"{dataset}: unknown label set {labels!r}; valid: {sorted(CHEXPERT_LABEL_SETS)} "
                "or a list of observation names"
            )
        names = list(CHEXPERT_LABEL_SETS[key])
    else:
        names = list(labels or [])
    if not names:
        raise ValueError(f"{dataset}: empty label set")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"{dataset}: unknown observation(s) {unknown}; valid: {list(available)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{dataset}: label set has duplicates: {names}")
    return names


def resolve_uncertainty(uncertainty, labels, dataset="CheXpert"):
    """``{label: policy}`` for every label of ``labels``.

    Args:
        uncertainty: one policy of :data:`UNCERTAINTY_POLICIES` for every label, or a dict
            ``{label: policy}``; labels it does not name take its ``"default"`` entry, else
            ``"zeros"``. Example (the CheXpert paper's U-Ones for Atelectasis and Edema):
            ``{"Atelectasis": "ones", "Edema": "ones", "default": "zeros"}``.
        labels: the resolved label names.

    Raises:
        ValueError: an unknown policy, or a dict key that is not one of ``labels``.
    """
    def check(policy, where):
        if policy not in UNCERTAINTY_POLICIES:
            raise ValueError(
                f"{dataset}: unknown uncertainty policy {policy!r}{where}; valid: {list(UNCERTAINTY_POLICIES)}"
            )
        return policy

    if isinstance(uncertainty, str):
        return {name: check(uncertainty, "") for name in labels}
    if not isinstance(uncertainty, dict):
        raise ValueError(f"{dataset}: uncertainty must be a policy name or a dict, got {uncertainty!r}")
    unknown = [k for k in uncertainty if k != DEFAULT_KEY and k not in labels]
    if unknown:
        raise ValueError(f"{dataset}: uncertainty policy for label(s) {unknown} not in the label set {list(labels)}")
    default = check(uncertainty.get(DEFAULT_KEY, "zeros"), " (default)")
    return {name: check(uncertainty.get(name, default), f" for {name!r}") for name in labels}


def _numeric_column(frame, column, source, line_numbers):
    """One observation column as float64 (NaN = blank); bad cells raise, naming line and column."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=np.float64)
        bad = ~np.isnan(values) & ~np.isin(values, _VALID_VALUES)
    else:
        text = raw.astype("string").str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        blank = text.isna().to_numpy() | (text.fillna("") == "").to_numpy()
        bad = (np.isnan(values) & ~blank) | (~np.isnan(values) & ~np.isin(values, _VALID_VALUES))
    if bad.any():
        where = np.flatnonzero(bad)
        first = where[0]
        raise DatasetFormatError(
            f"{source}: line {line_numbers[first]}, column {column!r}: value {raw.iloc[first]!r} is not "
            f"1.0, 0.0, -1.0 or blank ({len(where)} such cell(s) in this column)"
        )
    return values


def observation_arrays(frame, labels, uncertainty, source="table", line_numbers=None):
    """``(labels, label_weights)``: float32 arrays of shape (N, C), C = ``len(labels)``.

    Args:
        frame: a DataFrame with one column per name of ``labels`` (as read by pandas: float
            columns, or text columns when a cell is not a number).
        labels: the resolved label names (:func:`resolve_label_set`).
        uncertainty: ``{label: policy}`` (:func:`resolve_uncertainty`) or one policy name.
        source: the file name, for error messages.
        line_numbers: the file line of each row (array of N ints), for error messages;
            default ``frame``'s positional index + 2 (line 1 is the header).

    Returns:
        ``labels`` with values 0.0/1.0 (positive 1; negative and blank 0; uncertain by its
        policy) and ``label_weights`` 0.0/1.0 (0 only for uncertain cells under ``ignore``).

    Raises:
        DatasetFormatError: a column of ``labels`` is missing, or a cell is neither 1, 0, -1
            nor blank (names ``source``, the line and the column).
    """
    if isinstance(uncertainty, str):
        uncertainty = resolve_uncertainty(uncertainty, labels)
    missing = [name for name in labels if name not in frame.columns]
    if missing:
        raise DatasetFormatError(f"{source}: missing label column(s) {missing}; columns present: {list(frame.columns)}")
    if line_numbers is None:
        line_numbers = np.arange(len(frame)) + 2
    n = len(frame)
    targets = np.zeros((n, len(labels)), dtype=np.float32)
    weights = np.ones((n, len(labels)), dtype=np.float32)
    for j, name in enumerate(labels):
        values = _numeric_column(frame, name, source, line_numbers)
        target_u, weight_u = UNCERTAINTY_POLICIES[uncertainty[name]]
        uncertain = values == -1.0
        targets[:, j] = np.where(values == 1.0, 1.0, np.where(uncertain, target_u, 0.0))
        weights[:, j] = np.where(uncertain, weight_u, 1.0)
    return targets, weights


def prevalence(targets, weights):
    """Per label: positives / counted (weight > 0) images, NaN where none counts. Shape (C,)."""
    counted = (weights > 0).sum(axis=0)
    positives = ((targets > 0.5) & (weights > 0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, positives / np.maximum(counted, 1), np.nan)


def prevalence_gaps(train, val, names, threshold=0.02):
    """``[(label, train prevalence, val prevalence)]`` for labels whose prevalence differs by
    more than ``threshold`` (a fraction: 0.02 = 2 percentage points) between two splits.

    ``train`` and ``val`` are ``(targets, weights)`` pairs of shape (N, C); a side with no
    counted image of a label is not compared.
    """
    if len(train[0]) == 0 or len(val[0]) == 0:
        return []
    p_train, p_val = prevalence(*train), prevalence(*val)
    gaps = []
    for name, a, b in zip(names, p_train, p_val):
        if np.isfinite(a) and np.isfinite(b) and abs(a - b) > threshold:
            gaps.append((name, float(a), float(b)))
    return gaps


def warn_prevalence_gaps(dataset, train, val, names, threshold=0.02, log=None):
    """Log one warning listing :func:`prevalence_gaps`; returns them."""
    gaps = prevalence_gaps(train, val, names, threshold)
    if gaps:
        lines = ", ".join(f"{n}: train {a:.1%} vs val {b:.1%}" for n, a, b in gaps)
        (log or logger).warning(
            "%s: label prevalence differs by more than %.0f points between train and val: %s",
            dataset, threshold * 100, lines,
        )
    return gaps
