"""The one parser of numbers read from dataset files, DICOM headers and clinical records.

Used by the REFLACX reader (CSV cells), the DICOM header reader (``WindowCenter`` and the
like) and the clinical cleaning (:mod:`cxr_det.data.clinical.cleaning`), which alone asks
for the text forms nurses write in triage tables. :func:`whole_numbers` is its vectorised
counterpart for id columns (MIMIC ``subject_id``/``study_id``/``stay_id``, ``StudyDate``).
"""
import math
import re

import numpy as np
import pandas as pd

__all__ = ["BLANK_WORDS", "NUMBER_EVENTS", "MAX_WHOLE", "parse_number", "whole_numbers"]

# Whole numbers above this are not exactly representable as float64; no id column holds them
# (MIMIC's ids have 8 digits), so such a cell is not an id.
MAX_WHOLE = 2**53

# Text cells that mean "no value" (compared lower-cased, after stripping).
BLANK_WORDS = ("nan", "na", "n/a", "none", "null")
# The ``event`` values parse_number returns besides None.
NUMBER_EVENTS = ("blank", "non_numeric", "range_mean", "lower_bound")

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
# A range (``8-9``, ``8 - 9``, ``8–9``, ``8 to 9``) and a lower bound (``10+``).
_RANGE_RE = re.compile(rf"^{_NUM}\s*(?:-|–|—|to)\s*{_NUM}$", re.IGNORECASE)
_LOWER_BOUND_RE = re.compile(rf"^{_NUM}\s*\+$")


def _finite(v):
    """``(v, None)`` for a finite float, else ``(None, "non_numeric")``."""
    return (v, None) if math.isfinite(v) else (None, "non_numeric")


def parse_number(value, *, text_forms=False):
    """``(number, event)``: ``value`` as a finite float, and how it was read.

    ``number`` is a finite float, or None when ``value`` holds no usable number. ``event`` is
    None for a plain number, else one of:

    * ``"blank"``: None, NaN, or text that is empty or one of :data:`BLANK_WORDS`;
    * ``"non_numeric"``: anything else without a number (``"unable"``, ``"abc"``, ``inf``,
      a bool, an object ``float()`` rejects, an int or a range beyond float's range);
    * ``"range_mean"`` (``text_forms`` only): ``"8-9"`` (also ``"8 - 9"``, ``"8–9"``,
      ``"8 to 9"``) read as the mean of its ends, 8.5;
    * ``"lower_bound"`` (``text_forms`` only): ``"10+"`` read as 10.

    Text is stripped and read by ``float()`` (``" 1e3 "`` -> 1000.0). Other objects are
    read by ``float()`` (Python and numpy numbers, pydicom ``DS``/``IS`` values); with
    ``text_forms`` one that ``float()`` rejects is read as its ``str()``. Without
    ``text_forms`` (dataset files and DICOM headers: a cell is a number or unusable) a range
    or ``"10+"`` is ``non_numeric``; with it (triage tables, where nurses write a range when
    the patient gives one) its middle or lower bound is the best single guess.
    """
    if value is None:
        return None, "blank"
    if isinstance(value, (bool, np.bool_)):
        return None, "non_numeric"
    if not isinstance(value, str):
        try:
            v = float(value)
        except OverflowError:  # an int beyond float's range (10**400): not a usable number
            return None, "non_numeric"
        except (TypeError, ValueError):
            if not text_forms:
                return None, "non_numeric"
            value = str(value)
        else:
            return (None, "blank") if math.isnan(v) else _finite(v)
    text = value.strip()
    if not text or text.lower() in BLANK_WORDS:
        return None, "blank"
    try:
        return _finite(float(text))
    except ValueError:
        pass
    if text_forms:
        match = _RANGE_RE.match(text)
        if match:
            v = (float(match.group(1)) + float(match.group(2))) / 2.0
            return (v, "range_mean") if math.isfinite(v) else (None, "non_numeric")
        match = _LOWER_BOUND_RE.match(text)
        if match:
            v = float(match.group(1))
            return (v, "lower_bound") if math.isfinite(v) else (None, "non_numeric")
    return None, "non_numeric"


def whole_numbers(values) -> pd.Series:
    """A column of ids or dates as nullable integers (pandas ``Int64``).

    ``values``: a Series (text or numbers). A cell is read by ``pandas.to_numeric``; it
    gives its integer when that is a whole number within +-:data:`MAX_WHOLE` (``"10000032"``,
    ``"10000032.0"``), else NA (blank, text, a fraction, inf, or a number too large to be an
    id, which would overflow int64).
    """
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").astype(float)
    whole = numbers.notna() & (numbers.abs() <= MAX_WHOLE) & (numbers == numbers.round())
    return numbers.where(whole).astype("Int64")
