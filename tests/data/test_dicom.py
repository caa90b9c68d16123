"""DICOM decoding (display pipeline) and header parsing on tiny DICOMs written with pydicom."""
import os

import numpy as np
import pytest

import cxr_det  # noqa: F401
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.dicom import (
    DicomReadError,
    dicom_size,
    parse_patient_age,
    read_dicom,
    read_dicom_header,
)
from cxr_det.synthetic.dicom_writer import write_dicom


def linear_window(x, center, width, bits):
    """DICOM PS3.3 C.11.2.1.2 LINEAR window onto 0..255 (reference written from the standard)."""
    c, w = center - 0.5, width - 1.0
    y = np.clip((np.asarray(x, dtype=float) - c) / w + 0.5, 0.0, 1.0)
    return np.rint(y * 255).astype(np.uint8)


def test_written_file_is_a_valid_dicom(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "a.dicom", np.arange(12).reshape(3, 4), bits_stored=12)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(ds.pixel_array, np.arange(12).reshape(3, 4))


def test_monochrome2_ramp_min_max_scaled(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 16).reshape(16, 16)  # 0..4080, no window tags
    image = read_dicom(write_dicom(tmp_path / "m2.dicom", ramp, bits_stored=12))
    assert image.dtype == np.uint8 and image.shape == (16, 16)
    np.testing.assert_array_equal(image, np.arange(256).reshape(16, 16))


def test_monochrome1_ramp_is_inverted(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 16).reshape(16, 16)
    image = read_dicom(write_dicom(tmp_path / "m1.dicom", ramp, photometric="MONOCHROME1", bits_stored=12))
    np.testing.assert_array_equal(image, 255 - np.arange(256).reshape(16, 16))


def test_window_center_width_applied(tmp_path):
    values = np.array([[0, 1000, 1536, 1800, 2048, 2300, 2559, 3000, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dicom", values, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    image = read_dicom(path)
    np.testing.assert_array_equal(image, linear_window(values, 2048, 1024, 12))
    assert image[0, 0] == 0 and image[0, -1] == 255 and 120 < image[0, 4] < 136
    # The window, not the pixel range, sets the scale: a file not filling it is not stretched.
    narrow = np.array([[2000, 2048, 2100]], dtype=np.uint16)
    got = read_dicom(write_dicom(tmp_path / "n.dicom", narrow, bits_stored=12, WindowCenter=2048, WindowWidth=1024))
    np.testing.assert_array_equal(got, linear_window(narrow, 2048, 1024, 12))


def test_multi_value_window_uses_first(tmp_path):
    values = np.array([[1000, 1700, 2048, 2400, 3000]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "mv.dicom", values, bits_stored=12, WindowCenter=[2048, 500], WindowWidth=[1024, 100]
    )
    np.testing.assert_array_equal(read_dicom(path), linear_window(values, 2048, 1024, 12))


def test_window_with_monochrome1(tmp_path):
    values = np.array([[1000, 1700, 2048, 2400, 3000]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "w1.dicom", values, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=1024
    )
    np.testing.assert_array_equal(read_dicom(path), 255 - linear_window(values, 2048, 1024, 12))


def test_rescale_slope_intercept_applied_before_window(tmp_path):
    stored = np.array([[0, 250, 500, 750, 1000]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "r.dicom", stored, bits_stored=12,
        RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2000,
    )
    expected = linear_window(stored * 2.0 - 1000.0, 0, 2000, 12)
    np.testing.assert_array_equal(read_dicom(path), expected)
    # Without the rescale, stored value 500 would sit far above the window's centre.
    assert read_dicom(path)[0, 2] == 128


def test_invalid_window_falls_back_to_pixel_range(tmp_path, caplog):
    ramp = np.array([[0, 100, 400]], dtype=np.uint16)
    path = write_dicom(tmp_path / "bad.dicom", ramp, bits_stored=12, WindowCenter=200, WindowWidth=0)
    np.testing.assert_array_equal(read_dicom(path), [[0, 64, 255]])
    assert "window" in caplog.text.lower()


def test_header_fields_and_age(tmp_path):
    path = write_dicom(
        tmp_path / "h.dicom", np.zeros((30, 40)), bits_stored=14, PatientAge="065Y", PatientSex="F",
        PixelSpacing=[0.139, 0.14], WindowCenter=[1000, 2000], WindowWidth=[400, 800],
    )
    header = read_dicom_header(path)
    assert header["rows"] == 30 and header["columns"] == 40
    assert header["photometric"] == "MONOCHROME2" and header["bits_stored"] == 14
    assert header["pixel_spacing"] == pytest.approx((0.139, 0.14))
    assert header["patient_age_years"] == 65.0 and header["patient_age_raw"] == "065Y"
    assert header["patient_sex"] == "F"
    assert header["window_center"] == 1000.0 and header["window_width"] == 400.0
    assert dicom_size(path) == (30, 40)


@pytest.mark.parametrize(
    "raw, years",
    [("065Y", 65.0), ("040M", 40 / 12), ("003W", 21 / 365.2425), ("010D", 10 / 365.2425), ("65", 65.0),
     ("", None), ("abc", None), ("12X", None), (None, None)],
)
def test_parse_patient_age(raw, years):
    got = parse_patient_age(raw)
    assert got == (None if years is None else pytest.approx(years))


def test_header_age_months_and_missing(tmp_path):
    months = read_dicom_header(write_dicom(tmp_path / "m.dicom", np.zeros((4, 4)), PatientAge="040M", PatientSex="X"))
    assert months["patient_age_years"] == pytest.approx(40 / 12)
    assert months["patient_sex"] is None and months["patient_sex_raw"] == "X"
    missing = read_dicom_header(write_dicom(tmp_path / "n.dicom", np.zeros((4, 4))))
    assert missing["patient_age_years"] is None and missing["patient_sex"] is None
    assert missing["pixel_spacing"] is None and missing["window_center"] is None


def test_random_bytes_raise_dicom_read_error_naming_file(tmp_path):
    path = tmp_path / "garbage.dicom"
    path.write_bytes(os.urandom(512))
    for reader in (read_dicom, read_dicom_header, dicom_size):
        with pytest.raises(DicomReadError, match="garbage.dicom"):
            reader(path)
    assert issubclass(DicomReadError, DatasetFormatError)


def test_missing_file(tmp_path):
    with pytest.raises(DicomReadError, match=r"nothere\.dicom.*not found"):
        read_dicom(tmp_path / "nothere.dicom")
    with pytest.raises(DicomReadError, match="not found"):
        read_dicom_header(tmp_path / "nothere.dicom")


def test_no_pixel_data(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "p.dicom", np.zeros((4, 4)))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=r"p\.dicom.*no pixel data"):
        read_dicom(path)
    assert read_dicom_header(path)["rows"] == 4  # the header alone is still readable


# --- VOI LUT Sequence (PS3.3 C.11.2.1.1) -------------------------------------------------


def test_voi_lut_8bit_output_with_4096_entries_hand_ramp(tmp_path):
    # pydicom 3.0's apply_voi indexed an 8-bit LUT with uint8 and wrapped: stored 2048 came out 0.
    entries = [round(i * 255 / 4095) for i in range(4096)]  # hand ramp 0..255 over 0..4095
    stored = np.array([[0, 1024, 2048, 3071, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dicom", stored, bits_stored=12, voi_lut=(0, 8, entries))
    # Hand: round(v * 255 / 4095) = 0, 63.8 -> 64, 127.5 -> 128, 191.2 -> 191, 255.
    np.testing.assert_array_equal(read_dicom(path), [[0, 64, 128, 191, 255]])


def test_voi_lut_first_mapped_value_and_clipping(tmp_path):
    entries = [10 * i for i in range(300)]  # 16-bit entries 0..2990 for inputs 1000..1299
    stored = np.array([[0, 1000, 1150, 1299, 4000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut16.dicom", stored, bits_stored=12, voi_lut=(1000, 16, entries))
    # Hand: below the first mapped value -> entry 0; above the last -> entry 299 (2990);
    # display range 0..2990, so 1150 -> 1500 -> round(1500 * 255 / 2990) = round(127.93) = 128.
    np.testing.assert_array_equal(read_dicom(path), [[0, 0, 128, 255, 255]])


def test_voi_lut_data_as_ow_bytes(tmp_path):
    import pydicom
    from pydicom.dataelem import DataElement

    entries = [round(i * 255 / 4095) for i in range(4096)]
    stored = np.array([[0, 2048, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "ow.dicom", stored, bits_stored=12, voi_lut=(0, 8, entries))
    ds = pydicom.dcmread(path)
    ds.VOILUTSequence[0]["LUTData"] = DataElement(0x00283006, "OW", np.asarray(entries, "<u2").tobytes())
    ds.save_as(path)
    np.testing.assert_array_equal(read_dicom(path), [[0, 128, 255]])


# --- files without preamble / DICM / file meta (PS3.10 7.1) ------------------------------


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
def test_no_file_meta_read_with_note(tmp_path, syntax):
    ramp = (np.arange(256, dtype=np.uint16) * 16).reshape(16, 16)
    path = write_dicom(tmp_path / "bare.dicom", ramp, bits_stored=12, file_meta=False, transfer_syntax=syntax)
    assert path.read_bytes()[128:132] != b"DICM" and path.read_bytes()[:2] == b"\x08\x00"
    notes = []
    # Before: DicomReadError "not a DICOM file", so the image was dropped. Reference: the ramp's hand scaling.
    np.testing.assert_array_equal(read_dicom(path, notes=notes), np.arange(256).reshape(16, 16))
    assert [n.kind for n in notes] == ["no_file_meta"] and "bare.dicom" in notes[0].message
    assert dicom_size(path) == (16, 16) and read_dicom_header(path)["rows"] == 16
    for reader in (read_dicom, read_dicom_header, dicom_size):
        with pytest.raises(DicomReadError, match=r"bare\.dicom.*allow_no_file_meta=False"):
            reader(path, allow_no_file_meta=False)


# --- transfer syntaxes: every one the writer can produce decodes -------------------------

LOSSLESS = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Process 14
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1 (no decoder before: DicomReadError)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless (no decoder before)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
]
# Lossy syntaxes and the bound on |decoded - original| stored values that each guarantees or meets here.
LOSSY = {
    "1.2.840.10008.1.2.4.81": 2,  # JPEG-LS near-lossless, NEAR = 2 (writer's jls_error): a hard bound
    "1.2.840.10008.1.2.4.91": 64,  # JPEG 2000 at 5:1
    "1.2.840.10008.1.2.4.51": 64,  # JPEG Extended 12-bit (GDCM encoder)
}


def smooth_12bit():
    """A 64x64 12-bit image with a gradient and a bright disc (64 px: enough JPEG 2000 resolutions)."""
    yy, xx = np.mgrid[:64, :64]
    image = (xx + yy) * 24.0 + 1000.0 * (((yy - 32) ** 2 + (xx - 24) ** 2) < 150)
    return np.clip(image, 0, 4095).astype(np.uint16)


@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_transfer_syntax_matches_uncompressed(tmp_path, syntax):
    import pydicom

    pixels = smooth_12bit()
    reference = read_dicom(write_dicom(tmp_path / "ref.dicom", pixels, bits_stored=12, window=(2048, 4096)))
    path = write_dicom(tmp_path / "c.dicom", pixels, bits_stored=12, window=(2048, 4096), transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(ds.pixel_array, pixels)  # reference: the array written
    np.testing.assert_array_equal(read_dicom(path), reference)


@pytest.mark.parametrize("syntax", sorted(LOSSY))
def test_lossy_transfer_syntax_within_bound(tmp_path, syntax):
    import pydicom

    pixels = smooth_12bit()
    path = write_dicom(tmp_path / "c.dicom", pixels, bits_stored=12, transfer_syntax=syntax)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    notes = []
    got = read_dicom(path, scaling="minmax", notes=notes).astype(int)
    expected = read_dicom(write_dicom(tmp_path / "r.dicom", pixels, bits_stored=12), scaling="minmax").astype(int)
    # bound on stored values, scaled to display levels (+1 for rounding)
    assert np.abs(got - expected).max() <= LOSSY[syntax] * 255 / (pixels.max() - pixels.min()) + 1
    if syntax == "1.2.840.10008.1.2.4.51":  # pydicom 3.0 refuses 12-bit JPEG Extended with GDCM
        assert [n.kind for n in notes] == ["decoder_fallback"]


def test_jpeg_baseline_8bit(tmp_path):
    pixels = (smooth_12bit() >> 4).astype(np.uint8)
    path = write_dicom(
        tmp_path / "b.dicom", pixels, bits_stored=8, bits_allocated=8, transfer_syntax="1.2.840.10008.1.2.4.50"
    )
    ref = read_dicom(write_dicom(tmp_path / "r.dicom", pixels, bits_stored=8, bits_allocated=8))
    assert np.abs(read_dicom(path).astype(int) - ref.astype(int)).max() <= 8


@pytest.mark.parametrize("syntax", LOSSLESS + sorted(LOSSY) + ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.201"])
def test_a_decoder_is_installed(syntax):
    """The install requirements give pydicom a decoder for every syntax (HTJ2K .201 included, not encodable here)."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    uid = UID(syntax)
    if uid.is_compressed:
        assert get_decoder(uid).is_available, f"no decoder installed for {uid.name}"


# --- intensity options ------------------------------------------------------------------


def test_scaling_options_override_the_window(tmp_path):
    values = np.array([[0, 1000, 2048, 3000, 4000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dicom", values, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    hand = np.rint(values * 255.0 / 4000.0).astype(np.uint8)  # full range 0..4000
    np.testing.assert_array_equal(read_dicom(path, scaling="minmax"), hand)
    # numpy's percentiles 25/75 of the five values: 1000 and 3000.
    pct = np.clip(np.rint((values - 1000.0) * 255.0 / 2000.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_dicom(path, scaling="percentile", percentiles=(25, 75)), pct)
    with pytest.raises(ValueError, match="scaling"):
        read_dicom(path, scaling="window")
