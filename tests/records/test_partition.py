"""Sites for federated training: patient-disjoint assignments, the Dirichlet skew, site-split
files, and per-site records directories that hold exactly their images, byte for byte."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.records.partition import (SITES_CSV, assign_sites, patient_keys, read_site_split, write_sites,
                              write_subset)
from cxr_tf.records.reader import RecordsDir
from cxr_tf.records.tfrecord import read_records


def _frame(n_patients=60, seed=0):
    """A manifest-like frame: 3 images per patient, a primary finding per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        split = "train" if p % 5 < 3 else "val" if p % 5 == 3 else "test"
        main = ["A", "B", "C"][p % 3]
        for i in range(3):
            rows.append({"image_id": f"{p}_{i}", "patient": str(p), "split": split, "view": "PA" if p % 2 else "AP",
                         "A": float(main == "A"), "B": float(main == "B"), "C": float(main == "C" and i < 2),
                         "noise": float(rng.random() < 0.1)})
    return pd.DataFrame(rows)


def test_patient_keys_take_the_primary_finding_and_view():
    f = _frame()
    keys = patient_keys(f, ["A", "B", "C"], "label")
    assert keys["0"] == "A" and keys["1"] == "B" and keys["2"] == "C"
    f.loc[f["patient"] == "0", ["A", "B", "C"]] = 0.0
    assert patient_keys(f, ["A", "B", "C"], "label")["0"] == "(none)"
    assert patient_keys(f, ["A"], "view")["1"] == "PA"


@pytest.mark.parametrize("skew", ["none", "label", "view"])
def test_every_patient_lands_on_one_site_with_every_split(skew):
    f = _frame()
    site = assign_sites(f, ["A", "B", "C"], 3, skew=skew, alpha=0.5, seed=1)
    assert set(site.index) == set(f["patient"]) and set(site) == {0, 1, 2}
    per = pd.crosstab(f.groupby("patient")["split"].first(), site)
    assert (per.values > 0).all()
    assert assign_sites(f, ["A", "B", "C"], 3, skew=skew, seed=1).equals(site)     # seeded


def test_a_small_alpha_concentrates_each_label_on_few_sites():
    f = _frame(300)
    findings = ["A", "B", "C"]
    keys = patient_keys(f, findings, "label")

    def concentration(site):   # mean over labels of the largest site's share of that label's patients
        table = pd.crosstab(keys, site)
        return float((table.max(axis=1) / table.sum(axis=1)).mean())
    iid = concentration(assign_sites(f, findings, 3, skew="none", seed=0))
    skewed = concentration(assign_sites(f, findings, 3, skew="label", alpha=0.1, seed=0))
    assert iid < 0.5 < skewed


def test_bad_assignments_are_refused():
    f = _frame(6)
    with pytest.raises(CxrConfigError, match="at least 2 sites"):
        assign_sites(f, ["A"], 1)
    with pytest.raises(CxrConfigError, match="skew"):
        assign_sites(f, ["A"], 2, skew="age")
    with pytest.raises(CxrConfigError, match="could not deal"):
        assign_sites(f, ["A"], 5)


def test_site_split_files(tmp_path):
    f = _frame(10)
    by_patient = tmp_path / "sites.csv"
    pd.DataFrame({"patient": [str(p) for p in range(10)], "site": ["north"] * 5 + ["south"] * 5}).to_csv(
        by_patient, index=False)
    assert read_site_split(by_patient, f).value_counts().to_dict() == {"north": 5, "south": 5}
    by_image = tmp_path / "images.csv"
    pd.DataFrame({"image_id": f["image_id"], "site": np.where(f["patient"].astype(int) < 4, "a", "b")}).to_csv(
        by_image, index=False)
    assert read_site_split(by_image, f)["3"] == "a"
    split_patient = f.assign(site=["a", "b"] * (len(f) // 2))[["image_id", "site"]]
    split_patient.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CxrDataError, match="patient-disjoint"):
        read_site_split(tmp_path / "bad.csv", f)
    pd.DataFrame({"patient": ["0"], "site": ["a"]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(CxrDataError, match="have no site"):
        read_site_split(tmp_path / "short.csv", f)
    pd.DataFrame({"patient": ["0"]}).to_csv(tmp_path / "nosite.csv", index=False)
    with pytest.raises(CxrDataError, match="'site' column"):
        read_site_split(tmp_path / "nosite.csv", f)
    with pytest.raises(CxrDataError, match="not found"):
        read_site_split(tmp_path / "missing.csv", f)


def _examples(records_dir) -> dict:
    """image id -> serialized example, read through the manifest's shard positions."""
    rec = RecordsDir(records_dir)
    shards = {s: list(read_records(rec.path / s)) for s in rec.manifest["shard"].unique()}
    return {r.image_id: shards[r.shard][r.shard_index] for r in rec.manifest.itertuples()}


def test_site_records_hold_exactly_their_images_byte_for_byte(records_dir, tmp_path):
    rec = RecordsDir(records_dir)
    site = assign_sites(rec.manifest, rec.findings, 2, seed=0)
    paths = write_sites(records_dir, site, tmp_path)
    source = _examples(records_dir)
    seen = set()
    for name, path in paths.items():
        part = RecordsDir(path)
        ids = set(part.manifest["image_id"])
        assert not ids & seen
        seen |= ids
        assert {i: source[i] for i in ids} == _examples(path)
        assert part.splits["train"]["images"] == int((part.manifest["split"] == "train").sum())
        assert part.summary["subset"]["site"] == name
        assert set(part.manifest["patient"]).isdisjoint(
            set(rec.manifest["patient"]) - set(site.index[site == int(name)]))
    assert seen == set(rec.manifest["image_id"])
    table = pd.read_csv(tmp_path / SITES_CSV)
    assert table["images"].sum() == len(rec.manifest)


def test_subset_refuses_unknown_images(records_dir, tmp_path):
    with pytest.raises(CxrDataError, match="not in the records"):
        write_subset(records_dir, ["no-such-image"], tmp_path / "x")


def test_a_truncated_shard_is_named(records_dir, tmp_path):
    import shutil
    copy = tmp_path / "records"
    shutil.copytree(records_dir, copy)
    shard = sorted(copy.glob("train-*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    ids = RecordsDir(copy).manifest.query("shard == @shard.name")["image_id"]
    with pytest.raises(CxrDataError, match=shard.name):
        write_subset(copy, ids, tmp_path / "out")
