"""Square resizing with explicit aspect handling and an exact original->stored affine map."""

import numpy as np
import pytest

from cxr_tf.imaging import Affine, fit


def _dot_image(w, h, x, y):
    img = np.zeros((h, w), np.uint8)
    img[y - 2:y + 2, x - 2:x + 2] = 255
    return img


def _centroid(img):
    ys, xs = np.nonzero(img > 64)
    w = img[ys, xs].astype(float)
    return (xs * w).sum() / w.sum() + 0.5, (ys * w).sum() / w.sum() + 0.5


@pytest.mark.parametrize("aspect", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("w,h", [(200, 100), (100, 160), (128, 128)])
def test_affine_maps_a_known_point(aspect, w, h):
    x, y = w // 2 + 10, h // 2 - 8
    out, aff = fit(_dot_image(w, h, x, y), 64, aspect)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    ex, ey = aff.forward(x, y)            # dot centre, pixel-edge convention
    cx, cy = _centroid(out)
    assert abs(cx - ex) < 1.0 and abs(cy - ey) < 1.0


def test_pad_keeps_aspect_and_pads_black():
    img = np.full((100, 200), 200, np.uint8)
    out, aff = fit(img, 64, "pad")
    assert aff.sx == pytest.approx(aff.sy) and aff.tx == 0 and aff.ty == 16
    assert out[:16].max() == 0 and out[-16:].max() == 0 and out[32, 32] == 200


def test_crop_cuts_long_side_centrally():
    img = np.zeros((100, 200), np.uint8)
    img[:, 50:150] = 255
    out, aff = fit(img, 50, "crop")
    assert out.min() > 200 and aff.sx == pytest.approx(0.5) and aff.tx == pytest.approx(-25)


def test_box_roundtrip():
    aff = Affine(0.25, 0.5, 3.0, -2.0)
    box = (100.0, 40.0, 20.0, 10.0)
    assert aff.box_inverse(aff.box_forward(box)) == pytest.approx(box)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        fit(np.zeros((4, 4), np.uint8), 8, "squash")
    with pytest.raises(ValueError):
        fit(np.zeros((4, 4, 3), np.uint8), 8)
