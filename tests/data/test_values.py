"""cxr_det.data.values.parse_number: the one number parser (files, DICOM headers, triage cells)."""
import math

import numpy as np
import pytest

from cxr_det.data.values import parse_number


@pytest.mark.parametrize("raw, expected", [
    ("12", (12.0, None)), (" 12.5 ", (12.5, None)), ("1e3", (1000.0, None)), (7, (7.0, None)),
    (np.float32(2.5), (2.5, None)), (np.int64(3), (3.0, None)),
    (None, (None, "blank")), ("", (None, "blank")), ("  ", (None, "blank")), ("NaN", (None, "blank")),
    ("n/a", (None, "blank")), (math.nan, (None, "blank")),
    ("abc", (None, "non_numeric")), ("inf", (None, "non_numeric")), (-math.inf, (None, "non_numeric")),
    (True, (None, "non_numeric")), ([1.0], (None, "non_numeric")),
    # Without text_forms a range or a lower bound is not a number (a file's cell is one or unusable).
    ("8-9", (None, "non_numeric")), ("10+", (None, "non_numeric")),
])
def test_plain_numbers(raw, expected):
    assert parse_number(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("8-9", (8.5, "range_mean")), ("8 to 9", (8.5, "range_mean")), ("10+", (10.0, "lower_bound")),
    ("12", (12.0, None)), ("unable", (None, "non_numeric")), (None, (None, "blank")),
])
def test_text_forms(raw, expected):
    assert parse_number(raw, text_forms=True) == expected


def test_dicom_values():
    """pydicom's DS/IS values are read as numbers (the header reader's WindowCenter etc.)."""
    from pydicom.valuerep import DSfloat, IS

    assert parse_number(DSfloat("40.5")) == (40.5, None)
    assert parse_number(IS("400")) == (400.0, None)
