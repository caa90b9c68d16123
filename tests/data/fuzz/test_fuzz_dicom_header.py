"""Fuzzing of the DICOM header reader: tags with malformed values (``0xxY`` ages, text in
number tags, values of the wrong length for their VR), tags missing, and truncated or
overwritten files. Each header either reads, with every field of its documented type and
range, or raises DicomReadError naming the file (and the tags)."""
import logging
import math

import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from cxr_det.data.clinical.tables import vindr_clinical_from_dicom
from cxr_det.data.dicom_header import dicom_size, parse_patient_age, read_dicom_header
from cxr_det.synthetic.dicom_writer import write_dicom
from fuzzing import NASTY_CELLS, check_outcome, fuzz_settings

TAGS = ("Rows", "Columns", "BitsStored", "PhotometricInterpretation", "PixelSpacing", "ImagerPixelSpacing",
        "PatientAge", "PatientSex", "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept")
VRS = ("US", "SS", "UL", "IS", "DS", "AS", "CS", "LO", "FD", "OB", "UN", "SQ")
RAW_VALUES = st.one_of(
    st.binary(max_size=12),
    NASTY_CELLS.map(lambda s: s.encode("utf-8", errors="surrogatepass")),
    st.sampled_from([b"0xxY", b"065Y", b"999Y", b"12", b"-5", b"1e400", b"inf", b"nan", b"1\\2\\3", b"a\\b",
                     b"\xff\xfe\x00", b"M ", b"F", b"X", b"\x00\x00", b"\x00\x00\x00"]),
)
# One edit of a tag: removed, or replaced by raw bytes under some VR (the length the bytes have).
TAG_EDITS = st.lists(
    st.tuples(st.sampled_from(TAGS), st.one_of(st.just(None), st.tuples(st.sampled_from(VRS), RAW_VALUES))),
    min_size=1, max_size=4,
)
FILE_EDITS = st.one_of(
    st.just(None),
    st.tuples(st.just("truncate"), st.floats(min_value=0.0, max_value=1.0)),
    st.tuples(st.just("overwrite"), st.floats(min_value=0.0, max_value=1.0), st.binary(min_size=1, max_size=16)),
)


@pytest.fixture(scope="module")
def valid_dicom(tmp_path_factory):
    """A valid 12-bit DX DICOM (10x8) with every tag the header reader parses."""
    path = tmp_path_factory.mktemp("fuzz_dicom") / "valid.dicom"
    write_dicom(path, np.arange(80, dtype=np.uint16).reshape(8, 10), bits_stored=12, patient_age="065Y",
                patient_sex="F", window=(2000, 4000), rescale=(1, 0), pixel_spacing=0.2)
    logging.getLogger("cxr_det.data.dicom_header").setLevel(logging.ERROR)
    yield path
    logging.getLogger("cxr_det.data.dicom_header").setLevel(logging.NOTSET)


def write_mutated(valid, out, tag_edits, file_edit):
    ds = pydicom.dcmread(valid)
    for keyword, edit in tag_edits:
        tag = Tag(keyword)
        if edit is None:
            if tag in ds:
                del ds[tag]
        else:
            vr, value = edit
            ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    try:
        ds.save_as(out)
    except Exception:  # noqa: BLE001  (pydicom refuses to write some raw values; write the valid file)
        out.write_bytes(valid.read_bytes())
    if file_edit is not None:
        data = out.read_bytes()
        at = int(len(data) * file_edit[1])
        data = data[:at] if file_edit[0] == "truncate" else data[:at] + file_edit[2] + data[at + len(file_edit[2]):]
        out.write_bytes(data)


def check_header(header):
    for key in ("rows", "columns", "bits_stored"):
        assert header[key] is None or isinstance(header[key], int), (key, header[key])
    for key in ("window_center", "window_width", "rescale_slope", "rescale_intercept"):
        assert header[key] is None or (isinstance(header[key], float) and math.isfinite(header[key])), (key, header[key])
    age = header["patient_age_years"]
    assert age is None or (isinstance(age, float) and 0 <= age <= 999), age
    assert header["patient_sex"] in (None, "M", "F", "O")
    spacing = header["pixel_spacing"]
    assert spacing is None or (len(spacing) == 2 and all(math.isfinite(v) and v > 0 for v in spacing)), spacing
    for key in ("photometric", "patient_age_raw", "patient_sex_raw", "transfer_syntax"):
        assert header[key] is None or isinstance(header[key], str), (key, header[key])


@fuzz_settings(max_examples=80)
@given(tag_edits=TAG_EDITS, file_edit=FILE_EDITS)
def test_mutated_headers_read_typed_or_fail_clearly(valid_dicom, tag_edits, file_edit):
    out = valid_dicom.with_name("mutated.dicom")
    write_mutated(valid_dicom, out, tag_edits, file_edit)
    kind, header = check_outcome(lambda: read_dicom_header(out), [out])
    if kind == "loaded":
        check_header(header)
    kind, size = check_outcome(lambda: dicom_size(out), [out])
    if kind == "loaded":
        assert all(isinstance(v, int) and v > 0 for v in size), size
    kind, record = check_outcome(lambda: vindr_clinical_from_dicom(out), [out])
    if kind == "loaded":
        assert record["gender"] in (None, "M", "F", "O")
        assert isinstance(record["age"], float) and (math.isnan(record["age"]) or record["age"] > 0)


@fuzz_settings(max_examples=200)
@given(value=st.one_of(NASTY_CELLS, st.none(), st.integers(), st.floats(), st.binary(max_size=6)))
def test_patient_age_never_raises(value):
    age = parse_patient_age(value)
    assert age is None or (isinstance(age, float) and 0 <= age <= 999)


def test_malformed_age_and_missing_sex_read_as_missing(valid_dicom, tmp_path):
    """The cases the issue names, by hand: PatientAge '0xxY' and no PatientSex."""
    out = tmp_path / "odd.dicom"
    write_mutated(valid_dicom, out, [("PatientAge", ("AS", b"0xxY")), ("PatientSex", None)], None)
    header = read_dicom_header(out)
    assert (header["patient_age_years"], header["patient_age_raw"]) == (None, "0xxY")
    assert (header["patient_sex"], header["patient_sex_raw"]) == (None, None)
    assert (header["rows"], header["columns"]) == (8, 10)


def test_undecodable_rows_is_an_error_naming_file_and_tag(valid_dicom, tmp_path):
    """Rows of 3 bytes for VR US: pydicom raises BytesLengthException when the tag is first
    read (it used to escape from dicom_size); now the size read names the file and the tags,
    and the full header reads Rows as missing with a note."""
    from cxr_det.data.dicom_header import DicomReadError

    out = tmp_path / "bad_rows.dicom"
    write_mutated(valid_dicom, out, [("Rows", ("US", b"abc"))], None)
    with pytest.raises(DicomReadError, match=r"bad_rows\.dicom: Rows/Columns tags missing or invalid"):
        dicom_size(out)
    notes = []
    header = read_dicom_header(out, notes=notes)
    assert header["rows"] is None and header["columns"] == 10
    assert [n.kind for n in notes] == ["bad_tag"] and "tag Rows" in notes[0].message
