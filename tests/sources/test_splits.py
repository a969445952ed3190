"""Patient-level splits, and the build-time leakage assertion."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.sources import splits
from cxr_tf.core.errors import CxrDataError, LeakageError
from cxr_tf.sources.manifest import assert_patient_disjoint


def frame(n_patients=200, per=3):
    pats = np.repeat(np.arange(n_patients), per).astype(str)
    return pd.DataFrame({"image_id": [f"{p}_{i % per}.png" for i, p in enumerate(pats)], "patient": pats})


def test_random_split_fractions_and_disjoint():
    out = splits.random_split(frame(), (0.8, 0.1, 0.1), seed=0)
    per_split = out.groupby("split")["patient"].nunique()
    assert per_split.to_dict() == {"train": 160, "val": 20, "test": 20}
    assert out.groupby("patient")["split"].nunique().max() == 1


def test_random_split_is_seeded_and_order_independent():
    f = frame()
    a = splits.random_split(f, seed=5)
    b = splits.random_split(f.sample(frac=1, random_state=1), seed=5).loc[a.index]
    assert (a["split"] == b["split"]).all()
    assert not (splits.random_split(f, seed=6)["split"] == a["split"]).all()


def test_official_split_carves_val_by_patient():
    f = frame(100, 2)
    test = set(f["image_id"][f["patient"].astype(int) < 20])
    out = splits.official_split(f, set(f["image_id"]) - test, test, val_fraction=0.25, seed=0)
    assert out.loc[out["image_id"].isin(test), "split"].eq("test").all()
    assert out.groupby("split")["patient"].nunique().to_dict() == {"test": 20, "train": 60, "val": 20}


def test_official_split_rejects_image_on_no_list():
    f = frame(10, 1)
    with pytest.raises(CxrDataError, match="neither official list"):
        splits.official_split(f, set(f["image_id"][:5]), set(f["image_id"][5:8]))


def test_leakage_is_asserted():
    f = pd.DataFrame({"patient": ["1", "1", "2"], "split": ["train", "test", "val"]})
    with pytest.raises(LeakageError, match="1 patient"):
        assert_patient_disjoint(f)


def test_bad_fractions():
    with pytest.raises(ValueError):
        splits.random_split(frame(), (0.5, 0.1, 0.1))
