"""``cxr-tf stats`` on datasets whose counts are known exactly, on a records manifest with
uncertain labels, and on the real NIH label file."""

import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.studies.stats import stats


def test_exact_counts_on_a_known_layout(make_layout, tmp_path):
    root = make_layout(tmp_path / "nih")
    c = stats(tmp_path / "out", dataset="chestxray14", data_dir=root)
    assert c == {"images": 5, "patients": 4, "studies": 5, "positive_findings": 7, "images_with_no_positive": 1,
                 "images_on_disk": 5, "shared_patients": 0, "excluded_by_filter": {},
                 "label_file": {"images": 5, "patients": 4, "bbox_boxes": 1, "bbox_images": 1,
                                "train_val_images": 4, "test_images": 1}}
    prev = pd.read_csv(tmp_path / "out" / "prevalence.csv")
    whole = prev[prev["split"] == "all"].set_index("finding")
    assert whole.loc["Cardiomegaly", "positive"] == 2 and whole.loc["Mass", "positive"] == 1
    assert whole.loc["Hernia", "positive"] == 0 and whole.loc["Cardiomegaly", "positive_rate"] == pytest.approx(0.4)
    per_image = pd.read_csv(tmp_path / "out" / "labels_per_image.csv").set_index("positive_labels")["images"]
    assert per_image.to_dict() == {0: 1, 1: 1, 2: 3}
    co = pd.read_csv(tmp_path / "out" / "cooccurrence.csv").set_index("finding")
    assert co.loc["Mass", "Nodule"] == 1 and co.loc["Cardiomegaly", "Emphysema"] == 1 and co.loc["Mass", "Mass"] == 1
    assert pd.read_csv(tmp_path / "out" / "sex.csv").set_index("sex")["images"].to_dict() == {"M": 3, "F": 2}
    assert pd.read_csv(tmp_path / "out" / "views.csv").set_index("view")["images"].to_dict() == {"PA": 4, "AP": 1}
    age = pd.read_csv(tmp_path / "out" / "age.csv").iloc[0]
    assert age["median"] == 58 and age["implausible_over_120"] == 0
    by_label = pd.read_csv(tmp_path / "out" / "by_label.csv").set_index("label")
    assert by_label.loc["Cardiomegaly", "age_mean"] == 57.5 and by_label.loc["(none positive)", "sex_M"] == 1
    md = (tmp_path / "out" / "stats.md").read_text()
    assert "5 images listed, 5 on disk; 4 patients" in md and "7 positive findings" in md
    for name in ("prevalence", "labels_per_image", "cooccurrence", "age", "sex_by_label", "views", "samples"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 1000 and f"({name}.png)" in md


def test_manifest_with_uncertain_and_blank_rates(chexpert_records, tmp_path):
    res = CliRunner().invoke(main, ["stats", "--manifest", str(chexpert_records / "manifest.csv"),
                                    "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "patients shared between splits: 0" in res.output
    prev = pd.read_csv(tmp_path / "s" / "prevalence.csv")
    train = prev[prev["split"] == "train"]
    assert (train["uncertain"] > 0).any() and (train["blank"] > 0).any()
    man = pd.read_csv(chexpert_records / "manifest.csv")
    assert train["uncertain"].sum() == (man.loc[man["split"] == "train", train["finding"]] == -1).to_numpy().sum()
    overlap = pd.read_csv(tmp_path / "s" / "split_overlap.csv")
    assert len(overlap) >= 1 and (overlap["shared_patients"] == 0).all()


def test_real_nih_label_file(shared_dir, tmp_path):
    c = stats(tmp_path / "nih", dataset="chestxray14", data_dir=shared_dir / "nih")
    assert c["images"] == 112120 and c["patients"] == 30805 and c["images_on_disk"] == 12
    assert c["images_with_no_positive"] == 60361 and c["shared_patients"] == 0
    prev = pd.read_csv(tmp_path / "nih" / "prevalence.csv").query("split == 'all'").set_index("finding")
    assert prev.loc["Infiltration", "positive"] == 19894 and prev.loc["Hernia", "positive"] == 227
    assert "112,120 images listed, 12 on disk" in (tmp_path / "nih" / "stats.md").read_text()


def test_a_bare_manifest_needs_the_dataset(tmp_path, chexpert_records):
    import shutil
    shutil.copy(chexpert_records / "manifest.csv", tmp_path / "manifest.csv")
    res = CliRunner().invoke(main, ["stats", "--manifest", str(tmp_path / "manifest.csv"),
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "give --dataset" in res.output
    res = CliRunner().invoke(main, ["stats", "--manifest", str(tmp_path / "manifest.csv"), "--dataset", "chexpert",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
