"""The one image reader (cxr_det.data.image_io): 16-bit gray, colour, EXIF, shared intensity rule.

Expected values are computed by hand from the documented rule (docs/images.md):
``round((v - low) * 255 / (high - low))`` with (low, high) the full value range, or numpy's
percentiles for the percentile option; colour by ITU-R BT.601 luma.
"""
import numpy as np
import pytest
from PIL import Image

import cxr_det  # noqa: F401
from cxr_det.data.datasets.common import DatasetFormatError
from cxr_det.data.image_io import ImageReadError, read_gray, read_image
from cxr_det.synthetic.dicom_writer import write_dicom
from helpers import load_tool

RAMP12 = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every 12-bit value once


def full_range(values):
    """The rule by hand: full value range onto 0..255, rounded half to even."""
    v = np.asarray(values, dtype=float)
    return np.rint((v - v.min()) * 255.0 / (v.max() - v.min())).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_12bit_gray_png_tiff_scaled_not_clipped(tmp_path, suffix):
    # Before: detectron2's reader clipped I;16 at 255: 93.8% of this ramp's pixels became 255.
    path = tmp_path / f"ramp{suffix}"
    Image.fromarray(RAMP12).save(path)
    assert Image.open(path).mode == "I;16"
    gray = read_gray(path)
    np.testing.assert_array_equal(gray, full_range(RAMP12))
    # After: only values >= 4087 round to 255 (4087 * 255 / 4095 = 254.5): 9 of 4096 pixels.
    assert (gray == 255).sum() == 9 and np.unique(gray).size == 256
    assert read_image(path, "BGR").shape == (64, 64, 3)


def test_32bit_int_and_float_tiff(tmp_path):
    signed = RAMP12.astype(np.int32) - 2000  # PIL mode "I", negative values included
    Image.fromarray(signed).save(tmp_path / "i.tif")
    np.testing.assert_array_equal(read_gray(tmp_path / "i.tif"), full_range(signed))
    floats = RAMP12.astype(np.float32) / 7.0  # PIL mode "F"
    Image.fromarray(floats).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_gray(tmp_path / "f.tif"), full_range(floats))


def test_percentile_option(tmp_path):
    values = np.arange(100, dtype=np.uint16).reshape(10, 10) * 40
    Image.fromarray(values).save(tmp_path / "p.png")
    # Hand: numpy's linear percentiles of 0, 40, ..., 3960 at 10 and 90 are 396 and 3564.
    expected = np.clip(np.rint((values - 396.0) * 255.0 / (3564.0 - 396.0)), 0, 255).astype(np.uint8)
    got = read_gray(tmp_path / "p.png", scaling="percentile", percentiles=(10, 90))
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="percentiles"):
        read_gray(tmp_path / "p.png", scaling="percentile", percentiles=(90, 10))
    with pytest.raises(ValueError, match="scaling"):
        read_gray(tmp_path / "p.png", scaling="clip")


def test_png_and_dicom_share_one_rule(tmp_path):
    Image.fromarray(RAMP12).save(tmp_path / "r.png")
    dicom = write_dicom(tmp_path / "r.dicom", RAMP12, bits_stored=12)  # no VOI tags: full range
    np.testing.assert_array_equal(read_gray(tmp_path / "r.png"), read_gray(dicom))
    np.testing.assert_array_equal(
        read_gray(tmp_path / "r.png", scaling="percentile"), read_gray(dicom, scaling="percentile")
    )


def test_8bit_gray_kept_as_stored(tmp_path):
    values = np.array([[10, 20], [30, 200]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "g.png"), values)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", "L")[..., 0], values)
    np.testing.assert_array_equal(read_gray(tmp_path / "g.png", scaling="minmax"), full_range(values))


def test_rgb_xray_becomes_gray(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    notes = []
    image = read_image(tmp_path / "c.png", "BGR", notes=notes)
    # Before: the colour went through ([50, 100, 200] in BGR). Hand: 0.299*200 + 0.587*100 + 0.114*50 = 124.2.
    assert image.shape == (4, 4, 3) and (image == 124).all()
    assert [n.kind for n in notes] == ["color_to_gray"] and "c.png" in notes[0].message
    same = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 9, 3, axis=2)
    Image.fromarray(same).save(tmp_path / "same.jpg", quality=100, subsampling=0)
    quiet = []
    assert read_gray(tmp_path / "same.jpg", notes=quiet).shape == (4, 4) and quiet == []


def test_rgba_alpha(tmp_path):
    rgba = np.full((3, 3, 4), 90, np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    notes = []
    assert (read_gray(tmp_path / "opaque.png", notes=notes) == 90).all() and notes == []
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "holes.png")
    assert (read_gray(tmp_path / "holes.png", notes=notes) == 90).all()
    assert [n.kind for n in notes] == ["alpha_ignored"]


def test_16bit_rgb_png_keeps_its_depth(tmp_path):
    import cv2

    values = np.repeat((RAMP12[:8, :8] * 16)[..., None], 3, axis=2)  # 16-bit, identical channels
    cv2.imwrite(str(tmp_path / "c16.png"), values)
    # Before: Pillow cut it to the high byte (4000 -> 15); the rule maps the full range.
    np.testing.assert_array_equal(read_gray(tmp_path / "c16.png"), full_range(values[..., 0]))


def test_jpeg_exif_orientation_applied(tmp_path):
    # Regression guard (detectron2's reader applied EXIF too): orientation 6 = rotate 90 degrees clockwise to display.
    stored = np.zeros((8, 16), np.uint8)
    stored[:2, :4] = 255  # bright block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "e.jpg", exif=exif, quality=100)
    gray = read_gray(tmp_path / "e.jpg")
    assert gray.shape == (16, 8)
    # Rotating clockwise moves the stored top-left corner to the top-right.
    assert gray[:4, -2:].mean() > 200 and gray[:4, :2].mean() < 50


def test_formats_and_errors(tmp_path):
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "z.png")
    assert read_image(tmp_path / "z.png", "RGB").shape == (2, 3, 3)
    assert read_image(tmp_path / "z.png", "L").shape == (2, 3, 1)
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        read_image(tmp_path / "z.png", "YUV-BT.601")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        read_gray(tmp_path / "gone.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="junk.png"):
        read_gray(tmp_path / "junk.png")
    assert issubclass(ImageReadError, DatasetFormatError)
    nan = np.zeros((2, 2), np.float32)
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan\.tif: 1 pixel\(s\) are NaN"):
        read_gray(tmp_path / "nan.tif")


def _prepare_vindr_tool():
    return load_tool("prepare_vindr")


def test_png_cache_counts_images_converted_with_warnings(tmp_path, caplog):
    """The VinDr PNG cache reads through read_gray and counts every image whose reading warned."""
    import logging

    import cv2

    from cxr_det.data.datasets.vindr import build_png_cache

    train = tmp_path / "vindr-cxr" / "train"
    write_dicom(train / "good.dicom", RAMP12, bits_stored=12)
    write_dicom(train / "bare.dicom", RAMP12, bits_stored=12, file_meta=False)  # no preamble/DICM/file meta
    write_dicom(train / "jpeg12.dicom", RAMP12, bits_stored=12, transfer_syntax="1.2.840.10008.1.2.4.51")
    summary = build_png_cache(tmp_path, tmp_path / "cache", max_size=64, splits=["train"])
    assert summary["written"] == 3 and summary["failed"] == 0
    assert summary["warned"] == 2 and summary["warning_kinds"] == {"decoder_fallback": 1, "no_file_meta": 1}
    assert {file.rsplit("/", 1)[-1] for file, _, _ in summary["warnings"]} == {"bare.dicom", "jpeg12.dicom"}
    png = cv2.imread(str(tmp_path / "cache" / "train" / "bare.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png, full_range(RAMP12))  # the same rule as everywhere else

    strict = build_png_cache(
        tmp_path, tmp_path / "strict", max_size=64, splits=["train"], allow_no_file_meta=False
    )
    assert strict["failed"] == 1 and "bare.dicom" in strict["failures"][0][0]

    tool = _prepare_vindr_tool()
    with caplog.at_level(logging.INFO, logger="prepare_vindr"):
        assert tool.main(["--root", str(tmp_path), "--max-size", "64", "--splits", "train"]) == 0
    assert "2 converted with warnings [decoder_fallback: 1, no_file_meta: 1]" in caplog.text
    assert (tmp_path / "vindr-cxr" / "png_64" / "train" / "good.png").is_file()


# --------------------------------------------------------------------------- in memory (uploads)


def _memory_sources(path):
    """The file's content as bytes, as a file-like object, and as a bytearray."""
    import io

    data = path.read_bytes()
    return [data, io.BytesIO(data), bytearray(data)]


def test_in_memory_sources_read_exactly_as_the_file(tmp_path):
    import cv2

    Image.fromarray(RAMP12).save(tmp_path / "g16.png")
    cv2.imwrite(str(tmp_path / "c16.png"), np.repeat((RAMP12[:8, :8] * 16)[..., None], 3, axis=2))
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(RAMP12.astype(np.int32)).save(tmp_path / "i32.tif")
    stored = np.zeros((8, 16), np.uint8)
    stored[:2, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "e.jpg", exif=exif, quality=100)
    dicom = write_dicom(tmp_path / "m1.dcm", RAMP12, bits_stored=12, photometric="MONOCHROME1")
    for name in ("g16.png", "c16.png", "rgb.png", "i32.tif", "e.jpg", "m1.dcm"):
        expected = read_gray(tmp_path / name)
        for source in _memory_sources(tmp_path / name):
            np.testing.assert_array_equal(read_gray(source, name=name), expected, err_msg=name)
            np.testing.assert_array_equal(read_gray(source), expected, err_msg=f"{name} without a name")
    assert dicom.suffix == ".dcm"
    np.testing.assert_array_equal(read_image((tmp_path / "m1.dcm").read_bytes(), "BGR", name="upload"),
                                  read_image(tmp_path / "m1.dcm", "BGR"))


def test_in_memory_dicom_is_told_by_its_name_or_its_magic(tmp_path):
    import io

    from cxr_det.data.dicom import read_dicom_header
    from cxr_det.data.image_io import is_dicom

    write_dicom(tmp_path / "a.dicom", RAMP12, bits_stored=12, patient_age="065Y", patient_sex="F")
    write_dicom(tmp_path / "raw.dcm", RAMP12, bits_stored=12, file_meta=False)  # no preamble, no DICM
    data, raw = (tmp_path / "a.dicom").read_bytes(), (tmp_path / "raw.dcm").read_bytes()
    assert is_dicom(data) and is_dicom(io.BytesIO(data)) and is_dicom(data, name="scan.png")  # DICM at 128
    assert not is_dicom(raw) and is_dicom(raw, name="raw.DCM")
    named = io.BytesIO(raw)
    named.name = "raw.dcm"  # a file-like object's own name is the hint
    assert is_dicom(named)
    assert not is_dicom(b"\x89PNG\r\n\x1a\n") and not is_dicom(b"")
    assert not is_dicom(tmp_path / "a.png") and is_dicom(str(tmp_path / "a.DICOM"))  # paths: suffix only, as before
    notes = []
    np.testing.assert_array_equal(read_gray(raw, name="raw.dcm", notes=notes), read_gray(tmp_path / "raw.dcm"))
    assert [n.kind for n in notes] == ["no_file_meta"] and notes[0].message.startswith("raw.dcm:")
    header = read_dicom_header(io.BytesIO(data))
    assert header["patient_age_years"] == 65 and header["patient_sex"] == "F" and header["rows"] == 64


def test_in_memory_file_like_position_is_kept(tmp_path):
    import io

    Image.fromarray(RAMP12.astype(np.uint8)).save(tmp_path / "z.png")
    buffer = io.BytesIO((tmp_path / "z.png").read_bytes())
    buffer.seek(5)
    read_gray(buffer)
    assert buffer.tell() == 5


def test_in_memory_errors_name_the_upload(tmp_path):
    from cxr_det.data.dicom import DicomReadError

    with pytest.raises(ImageReadError, match=r"^notes\.txt: cannot be decoded as an image") as error:
        read_gray(b"hello, this is text", name="notes.txt")
    assert "BytesIO" not in str(error.value)  # Pillow names the buffer; the message names the upload
    with pytest.raises(ImageReadError, match=r"^<in-memory image>: empty file"):
        read_gray(b"")
    with pytest.raises(DicomReadError, match=r"^x\.dcm: "):
        read_gray(b"\x89PNG\r\n\x1a\n not a dicom", name="x.dcm")
    with pytest.raises(DicomReadError, match=r"^y\.dcm: empty file"):
        read_gray(b"", name="y.dcm")
    with pytest.raises(DicomReadError, match="not a DICOM"):
        read_gray(b"\x00" * 200, name="x.dcm", allow_no_file_meta=False)
