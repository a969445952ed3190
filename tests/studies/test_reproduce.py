"""reproduce: the recipe beside the paper's, report rendering, predict on files."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cxr_tf.core import cards
from cxr_tf.cli import main
from cxr_tf.studies.reproduce import render_report, resolve


@pytest.mark.parametrize("paper,rows", [
    ("chexnet", ("| backbone | densenet121 | densenet121 |", "| lr | 0.001 | 0.001 |",
                 "| batch_size | 16 | 16 |", "| loss | bce | bce |", "| image_size | 224 | 224 |")),
    ("chestxray8", ("| backbone | resnet50 | resnet50 |", "| head | transition_lse | transition_lse |",
                    "| loss | wcel | wcel |", "| lse_r | 10.0 | 10.0 |",
                    "| heatmap_thresholds | [60, 180] | [60, 180] |", "| image_size | 224 | 1024 |")),
])
def test_dry_run_shows_recipe_beside_paper(tmp_path, paper, rows):
    res = CliRunner().invoke(main, ["reproduce", paper, "--dry-run", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for row in rows:
        assert row in res.output
    assert not list(tmp_path.iterdir())


def test_demo_settings_scale_down_but_keep_recipe():
    cfg, paper = resolve("chexnet", demo=True)
    settings = cfg.resolved()
    assert settings.backbone == "densenet121" and settings.lr == 1e-3 and settings.loss == "bce"
    assert settings.weights == "none" and settings.image_size < 224 and paper["lr"] == settings.lr
    cx8 = resolve("chestxray8", demo=True, overrides={"epochs": 2})[0].resolved()
    assert cx8.lr == 1e-4 and cx8.transition_depth == 256 and cx8.epochs == 2 and len(cx8.findings) == 8


def test_every_recipe_speaks_the_config_vocabulary():
    """Every [train] and [demo.train] key of every recipe is a TrainConfig field, and an unknown
    key is refused naming the file, the key and the closest field."""
    from cxr_tf.training.config import TrainConfig
    for paper in cards.available("reproductions"):
        for demo in (False, True):
            resolve(paper, demo=demo)[0].resolved()
    with pytest.raises(Exception, match=r"recipe.toml: unknown setting 'learning_rate'; did you mean 'lr'\?"):
        TrainConfig.from_mapping({"learning_rate": 1e-3}, where="recipe.toml")


def test_report_table_has_every_paper_row():
    recipe = cards.reproduction("chexnet")
    findings = list(recipe["reference"]["auroc"])
    rows = [{"finding": f, "auroc": 0.9, "auroc_ci_low": 0.85, "auroc_ci_high": 0.95} for f in findings]
    rows.append({"finding": "mean", "auroc": 0.9, "auroc_ci_low": 0.88, "auroc_ci_high": 0.92})
    metrics = {"per_class": rows, "images": 10, "bootstrap": {"resamples": 100}}
    text = render_report(recipe, metrics, "random", True, "| recipe |", 60.0)
    assert "| Cardiomegaly | 0.9000 (0.850-0.950) | 0.8070 | 0.9040 | 0.9248 |" in text
    assert "| **mean** | **0.9000**" in text and "0.8414" in text
    assert "synthetic phantoms" in text and "random, patient-level" in text


def test_predict_png_and_dicom(records_dir, tmp_path):
    from cxr_tf.models import findings_of, load_model, save_model, set_thresholds
    from cxr_tf.training.train import TrainConfig, train
    run = tmp_path / "run"
    train(TrainConfig(records=str(records_dir), out=str(run), preset="tiny", weights=None, epochs=1,
                      batch_size=8, image_size=48, verbose=0, strategy="default"))
    model = load_model(run / "model.keras")
    set_thresholds(model, {f: 0.5 for f in findings_of(model)})
    save_model(model, run / "model.keras")
    img = tmp_path / "imgs"
    img.mkdir()
    Image.fromarray(np.full((80, 60), 120, np.uint8)).save(img / "a.png")
    Image.fromarray(np.full((50, 50, 3), 90, np.uint8)).save(img / "b.jpg")
    (img / "broken.png").write_bytes(b"nope")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.1", generate_uid(), "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 40, 30, 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(1200, dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(img / "c.dcm", enforce_file_format=True)
    res = CliRunner().invoke(main, ["predict", str(run / "model.keras"), str(img), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "broken.png" in res.output
    res = CliRunner().invoke(main, ["predict", str(run / "model.keras"), str(img), "--out",
                                    str(tmp_path / "p.csv"), "--skip-bad"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable" in res.output
    import pandas as pd
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 3 and "prob_Cardiomegaly" in table and "call_Cardiomegaly" in table
    assert any(f.endswith("c.dcm") for f in table["file"])
    assert table.filter(like="prob_").to_numpy().min() >= 0


def test_chestxray8_head_trains_with_wcel(records_dir, tmp_path):
    from cxr_tf.training.train import TrainConfig, train
    state = train(TrainConfig(records=str(records_dir), out=str(tmp_path / "cx8"), preset="chestxray8",
                              backbone="tiny", weights=None, loss="wcel", epochs=1, batch_size=8,
                              image_size=48, transition_depth=16, verbose=0, strategy="default",
                              tb_cam_images=0))
    assert state["epoch"] == 1
    cfg = json.loads((tmp_path / "cx8" / "config.json").read_text())
    assert cfg["findings"] == cards.dataset_card("chestxray14")["findings_chestxray8"]
    from cxr_tf.models import cam_layer, load_model
    assert cam_layer(load_model(tmp_path / "cx8" / "model.keras")) == "transition_relu"


def test_recipes_name_a_registered_heatmap_method_and_a_bad_one_is_refused():
    from cxr_tf.core import cards
    from cxr_tf.core.errors import CxrConfigError
    from cxr_tf.explain.registry import DEFAULT_METHOD
    from cxr_tf.studies.reproduce import _localize_method
    for paper in ("chexnet", "chestxray8"):
        assert _localize_method(cards.reproduction(paper)) == DEFAULT_METHOD == "layercam"
    assert _localize_method({}) == DEFAULT_METHOD
    with pytest.raises(CxrConfigError, match="unknown \\[localize\\] method 'nope'"):
        _localize_method({"name": "x", "localize": {"method": "nope"}})
