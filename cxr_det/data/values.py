"""The one parser of numbers read from dataset files, DICOM headers and clinical records.

Used by the REFLACX reader (CSV cells), the DICOM header reader (``WindowCenter`` and the
like) and the clinical cleaning (:mod:`cxr_det.data.clinical.cleaning`), which alone asks
for the text forms nurses write in triage tables.
"""
import math
import re

import numpy as np

__all__ = ["BLANK_WORDS", "NUMBER_EVENTS", "parse_number"]

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
      a bool, an object ``float()`` rejects);
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
            return (float(match.group(1)) + float(match.group(2))) / 2.0, "range_mean"
        match = _LOWER_BOUND_RE.match(text)
        if match:
            return float(match.group(1)), "lower_bound"
    return None, "non_numeric"
