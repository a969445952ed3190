"""Decoding by content: every mode converts to 8-bit grayscale; bad files fail naming the file."""

import io

import numpy as np
import pytest
from PIL import Image

from cxr_tf.core.errors import CxrImageError
from cxr_tf.imaging import decode_bytes, decode_file


def _png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


GRADIENT = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64


def test_gray_png_is_exact(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(GRADIENT).save(path)
    out = decode_file(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64)
    np.testing.assert_array_equal(out, GRADIENT)


def test_rgba_png_converts_to_gray(tmp_path):
    rgba = np.dstack([GRADIENT, GRADIENT, GRADIENT, np.full_like(GRADIENT, 255)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert Image.open(path).mode == "RGBA"
    np.testing.assert_array_equal(decode_file(path), GRADIENT)


def test_rgb_uses_luma():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200
    out = decode_bytes(_png(Image.fromarray(rgb, mode="RGB")))
    assert out.shape == (4, 4) and abs(int(out[0, 0]) - round(0.587 * 200)) <= 1


@pytest.mark.parametrize("scale,full", [(16, 4095), (257, 65535)])
def test_16bit_png_scales_by_bit_depth(tmp_path, scale, full):
    arr16 = GRADIENT.astype(np.uint16) * scale  # 12-bit data, or 8-bit data widened to 16 bits
    path = tmp_path / "sixteen.png"
    Image.fromarray(arr16).save(path)
    assert Image.open(path).mode.startswith("I")
    out = decode_file(path)
    assert out.dtype == np.uint8
    np.testing.assert_allclose(out, np.round(arr16 * 255.0 / full), atol=0.5)
    if scale == 257:
        np.testing.assert_array_equal(out, GRADIENT)


def test_jpeg_with_png_name_is_decoded_by_content(tmp_path):
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(_png(Image.fromarray(GRADIENT), fmt="JPEG"))
    out = decode_file(path)
    assert out.shape == (48, 64)
    assert np.abs(out.astype(int) - GRADIENT).mean() < 3


def test_palette_png(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(GRADIENT).convert("P").save(path)
    assert decode_file(path).shape == (48, 64)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is not an image at all", "not a recognised image"),
])
def test_bad_bytes_name_the_file(tmp_path, content, needle):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(CxrImageError) as err:
        decode_file(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_truncated_png_is_an_error_not_a_partial_image(tmp_path):
    rng = np.random.default_rng(0)
    data = _png(Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)))
    path = tmp_path / "trunc.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CxrImageError, match="truncated|corrupt"):
        decode_file(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(CxrImageError, match="file not found"):
        decode_file(tmp_path / "nope.png")
