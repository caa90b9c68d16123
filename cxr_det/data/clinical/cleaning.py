"""Cleaning of raw clinical values: parsing of text, units, physiological ranges.

Cleaning of a numeric value, in order:

1. Parsing. Numbers (or numeric text) are kept. A range written ``"8-9"`` (also ``"8 - 9"``,
   ``"8–9"``, ``"8 to 9"``) becomes the mean of its ends (8.5): triage nurses write a range
   when the patient gives one, and its middle is the best single guess. ``"10+"`` becomes
   10 (the lower bound). Anything else (``"unable"``, ``"uta"``, ``"denies"``, blank,
   NaN, inf) is missing.
2. Units (temperature only): a value inside the plausible Celsius range 30..45 was entered
   in Celsius and is converted to Fahrenheit (``F = C * 9/5 + 32``; 38.6 -> 101.48).
   No Fahrenheit body temperature is that low, so the two ranges cannot be confused.
3. Physiological range, per feature (bounds inclusive, after unit conversion):

   ===========  ===========  =======  ==============================================
   feature      range        outside  why
   ===========  ===========  =======  ==============================================
   age          0 .. 110 y   missing  MIMIC caps ages at 91 (plus years since anchor)
   temperature  90 .. 110 F  missing  e.g. 986 (98.6 without the point), 9.8, 55
   heartrate    20 .. 250    missing
   resprate     4 .. 60      missing  62 in REFLACX's stays is counted as an error
   o2sat        50 .. 100 %  missing  58 is kept: severe but real hypoxia
   sbp          50 .. 260    missing
   dbp          20 .. 180    missing  e.g. 278 (REFLACX)
   pain         0 .. 10      missing  e.g. 88 (the scale is 0..10; likely 8 typed twice)
   acuity       1 .. 5       missing  the ESI scale
   ===========  ===========  =======  ==============================================

   Out-of-range values are set missing rather than clipped: in these tables they are
   typing or unit errors, not extreme measurements, and clipping would turn a typo into
   the most extreme value the model can see. A feature can be given the policy
   ``"clip"`` instead through the ``ranges`` argument (``{"o2sat": (50, 100, "clip")}``).
   Features without a range (e.g. extra columns of a user CSV) are only parsed.

Categorical values (:func:`clean_category`) are stripped text; gender is upper-cased and
``MALE``/``FEMALE`` become ``M``/``F``. Blank or NaN is missing.

The cleaning events counted by the featurizer are those returned here: ``blank``,
``non_numeric``, ``range_mean``, ``lower_bound``, ``celsius_to_fahrenheit``,
``out_of_range`` and ``clipped``.
"""
import math

import numpy as np

from cxr_det.data.values import parse_number as _parse_number
from cxr_det.formats.mimic_iv_ed_format import MDF_NET_CLINICAL_CATEGORICAL, MDF_NET_CLINICAL_NUMERIC

__all__ = [
    "DEFAULT_NUMERIC",
    "DEFAULT_CATEGORICAL",
    "FEATURE_RANGES",
    "FEATURE_DESCRIPTIONS",
    "CELSIUS_RANGE",
    "POLICIES",
    "parse_number",
    "clean_numeric",
    "clean_category",
    "check_ranges",
]

# MDF-Net's features: age and the MIMIC-IV-ED triage measurements; gender.
DEFAULT_NUMERIC = MDF_NET_CLINICAL_NUMERIC
DEFAULT_CATEGORICAL = MDF_NET_CLINICAL_CATEGORICAL
# feature -> (low, high, policy for values outside: "missing" | "clip"); see the module docstring.
FEATURE_RANGES = {
    "age": (0.0, 110.0, "missing"),
    "temperature": (90.0, 110.0, "missing"),
    "heartrate": (20.0, 250.0, "missing"),
    "resprate": (4.0, 60.0, "missing"),
    "o2sat": (50.0, 100.0, "missing"),
    "sbp": (50.0, 260.0, "missing"),
    "dbp": (20.0, 180.0, "missing"),
    "pain": (0.0, 10.0, "missing"),
    "acuity": (1.0, 5.0, "missing"),
}
# Unit or scale of each feature as MIMIC-IV-ED triage records it (triage table documentation).
FEATURE_DESCRIPTIONS = {
    "age": "years",
    "temperature": "degrees F (Celsius converted)",
    "heartrate": "beats/min",
    "resprate": "breaths/min",
    "o2sat": "% (SpO2)",
    "sbp": "mmHg (systolic)",
    "dbp": "mmHg (diastolic)",
    "pain": "0..10 scale",
    "acuity": "ESI 1 (most urgent)..5",
    "gender": "M / F",
}
# Temperatures inside this range are taken as Celsius and converted to Fahrenheit.
CELSIUS_RANGE = (30.0, 45.0)
POLICIES = ("missing", "clip")

_GENDER_ALIASES = {"MALE": "M", "FEMALE": "F"}


def parse_number(value):
    """``(float, event)`` for one raw cell; the float is NaN when the value is missing.

    :func:`cxr_det.data.values.parse_number` with the triage text forms: ``event`` is None
    for a plain number, else one of ``"blank"`` (None/empty/NaN), ``"range_mean"``
    (``"8-9"`` -> 8.5), ``"lower_bound"`` (``"10+"`` -> 10) or ``"non_numeric"`` (text such
    as ``"unable"``, or inf).
    """
    v, event = _parse_number(value, text_forms=True)
    return (math.nan if v is None else v), event


def clean_numeric(feature, value, ranges=None, celsius_range=CELSIUS_RANGE):
    """``(float or NaN, [events])``: :func:`parse_number`, Celsius conversion, range check.

    ``ranges``: feature -> (low, high, policy) (default :data:`FEATURE_RANGES`). Events
    added after parsing: ``"celsius_to_fahrenheit"``, ``"out_of_range"`` (set missing) or
    ``"clipped"``.
    """
    ranges = FEATURE_RANGES if ranges is None else ranges
    v, event = parse_number(value)
    events = [event] if event else []
    if math.isnan(v):
        return v, events
    if feature == "temperature" and celsius_range and celsius_range[0] <= v <= celsius_range[1]:
        v = v * 9.0 / 5.0 + 32.0
        events.append("celsius_to_fahrenheit")
    bounds = ranges.get(feature)
    if bounds is not None:
        low, high, policy = bounds
        if not low <= v <= high:
            if policy == "clip":
                v = min(max(v, low), high)
                events.append("clipped")
            else:
                v = math.nan
                events.append("out_of_range")
    return v, events


def clean_category(feature, value):
    """Stripped text of a categorical value, or None when missing (gender: ``M``/``F``/...)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # 1.0 read from a CSV names the same category as 1
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return None
    if feature == "gender":
        text = text.upper()
        text = _GENDER_ALIASES.get(text, text)
    return text


def check_ranges(ranges):
    """``{feature: (low, high, policy)}`` validated; ``(low, high)`` means policy ``"missing"``."""
    out = {}
    for name, bounds in ranges.items():
        if len(bounds) == 2:
            bounds = (*bounds, "missing")
        low, high, policy = bounds
        if policy not in POLICIES:
            raise ValueError(f"clinical ranges: policy of {name!r} must be one of {POLICIES}, got {policy!r}")
        if not float(low) <= float(high):
            raise ValueError(f"clinical ranges: range of {name!r} has low > high: {bounds}")
        out[str(name)] = (float(low), float(high), str(policy))
    return out
