"""Run-length masks: exact round trips, column-major order, SIIM-ACR's relative flavour, unions,
boxes, and bad input that says what is wrong."""

import numpy as np
import pytest

from cxr_tf.core.errors import CxrDataError
from cxr_tf.imaging import masks


def test_column_major_runs_by_hand():
    # 3 wide x 2 high; column-major index = x * height + y
    mask = np.array([[1, 0, 1],
                     [1, 1, 0]], np.uint8)
    # column 0: idx 0,1 inside; column 1: idx 3 inside; column 2: idx 4 inside -> runs (0,2) (3,2)
    assert masks.encode(mask) == "0 2 3 2"
    assert np.array_equal(masks.decode("0 2 3 2", width=3, height=2), mask)
    assert masks.box(mask) == (0.0, 0.0, 3.0, 2.0)
    assert masks.area("0 2 3 2") == 4


def test_random_masks_round_trip_exactly():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = masks.encode(mask)
        assert np.array_equal(masks.decode(rle, int(w), int(h)), mask)
        assert masks.from_relative(masks.to_relative(rle)) == rle


def test_siim_relative_encoding():
    # relative: each start counted from the end of the previous run
    assert masks.from_relative("5 3 2 4") == "5 3 10 4"
    assert masks.to_relative("5 3 10 4") == "5 3 2 4"
    assert masks.from_relative("-1") == "" and masks.to_relative("") == "-1"
    assert masks.decode("", 4, 4).sum() == 0 and masks.box(np.zeros((4, 4))) is None


def test_union_and_box():
    a = np.zeros((8, 6), np.uint8)
    b = np.zeros((8, 6), np.uint8)
    a[1:3, 1:2] = 1
    b[5:7, 4:6] = 1
    u = masks.union([masks.encode(a), masks.encode(b)], width=6, height=8)
    assert np.array_equal(masks.decode(u, 6, 8), a | b)
    assert masks.box(a | b) == (1.0, 1.0, 5.0, 6.0)


@pytest.mark.parametrize("rle, message", [("1 2 3", "odd number"), ("a b", "not a list of integers"),
                                          ("0 100", "outside"), ("5 3 6 2", "overlapping")])
def test_bad_masks_name_the_problem(rle, message):
    with pytest.raises(CxrDataError, match=message):
        masks.decode(rle, 4, 4, where="train-rle.csv")
