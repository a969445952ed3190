"""The manifest contract: columns, label states, uniqueness; and label policies."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.sources import manifest
from cxr_tf.core.errors import CxrDataError
from cxr_tf.vocab.findings import IGNORE, train_targets as apply_policy, vocabulary

F = ("A", "B")


def good():
    return pd.DataFrame({"path": ["a.png", "b.png"], "image_id": ["a", "b"], "patient": ["1", "2"],
                         "study": ["s1", "s2"], "view": ["PA", "AP"], "age": [40, 50], "sex": ["M", "F"],
                         "A": [1.0, -1.0], "B": [np.nan, 0.0], "split": ["train", "test"]})


def test_valid_manifest_roundtrip(tmp_path):
    manifest.write(good(), tmp_path / "m.csv")
    back = manifest.read(tmp_path / "m.csv", F)
    assert back["patient"].tolist() == ["1", "2"] and np.isnan(back.loc[0, "B"])


@pytest.mark.parametrize("mutate,needle", [
    (lambda f: f.drop(columns="view"), "lacks column"),
    (lambda f: f.assign(A=[2.0, 0.0]), "allowed: 1, 0, -1, blank"),
    (lambda f: f.assign(image_id=["a", "a"]), "duplicate image_id"),
    (lambda f: f.assign(split=["train", "validation"]), "unknown split"),
    (lambda f: f.assign(patient=["1", ""]), "empty 'patient'"),
])
def test_violations_name_the_problem(mutate, needle):
    with pytest.raises(CxrDataError, match=needle):
        manifest.validate(mutate(good()), F, where="x.csv")


def test_policies():
    y = np.array([1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(apply_policy(y, "ignore", "zeros"), [1, 0, IGNORE, 0])
    np.testing.assert_array_equal(apply_policy(y, "ones", "ignore"), [1, 0, 1, IGNORE])
    np.testing.assert_array_equal(apply_policy(y, "zeros", "zeros"), [1, 0, 0, 0])


def test_vocabulary_aliases_and_order():
    v = vocabulary("chestxray14")
    assert v.findings[:3] == ("Atelectasis", "Cardiomegaly", "Effusion") and len(v) == 14
    assert v.canonical("Infiltrate") == "Infiltration"
    with pytest.raises(CxrDataError, match="unknown chestxray14 finding"):
        v.canonical("Pneumonitis", "file.csv")
