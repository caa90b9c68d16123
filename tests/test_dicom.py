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
from cxr_det.data.synthetic.dicom_writer import write_dicom


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
