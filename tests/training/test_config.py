"""One config vocabulary: TrainConfig's fields are the keys of presets, recipes, config files and
the command line; presets sit beneath what was given; unknown keys and bad values are refused."""

import pytest
from click.testing import CliRunner

from cxr_tf.models import presets
from cxr_tf.training.config import FIELDS, TrainConfig, for_resume, load_file, parse_set
from cxr_tf.core.errors import CxrConfigError, CxrDataError


def test_preset_fills_what_was_not_given():
    tiny = TrainConfig(preset="tiny").resolved()
    assert tiny.weights == "none" and tiny.backbone == "tiny" and tiny.image_size == 64
    assert tiny.normalization == "imagenet" and len(tiny.findings) == 14 and tiny.given == {"preset"}
    cx8 = TrainConfig(preset="chestxray8", image_size=96).resolved()
    assert cx8.image_size == 96 and cx8.head == "transition_lse" and cx8.normalization == "caffe"
    assert cx8.findings == ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                            "Pneumonia", "Pneumothorax"]
    chexpert = TrainConfig(preset="chexpert").resolved()
    assert chexpert.dataset == "chexpert" and chexpert.findings[0] == "No Finding"
    assert TrainConfig(weights=None).resolved().weights == "none"   # Keras' None = from scratch
    from pathlib import Path
    assert TrainConfig(records=Path("/data/r")).resolved().records == "/data/r"
    assert TrainConfig(normalization="model:resnet50").resolved().normalization == "caffe"


def test_every_preset_key_is_a_field():
    for name in presets.names("presets"):
        assert set(presets.preset(name)) <= set(FIELDS), name
        TrainConfig(preset=name, weights="none").resolved()


@pytest.mark.parametrize("values,match", [
    ({"learning_rate": 1e-3}, "unknown setting 'learning_rate'; did you mean 'lr'"),
    ({"epoch": 3}, "did you mean 'epochs'"),
    ({"bakbone": "resnet50"}, "did you mean 'backbone'"),
    ({"epochs": "ten"}, "epochs: expected int, got 'ten'"),
    ({"epochs": 2.5}, "epochs: expected int"),
    ({"hflip": "yes"}, "hflip: expected bool"),
    ({"epochs": 0}, "epochs: must be at least 1"),
    ({"lr": -1.0}, "lr: must be positive"),
    ({"crop_scale": [0.9, 0.5]}, "crop_scale: must be"),
    ({"backbone": "resnet51"}, "unknown backbone 'resnet51'; available: densenet121"),
    ({"preset": "nonesuch"}, "unknown preset 'nonesuch'"),
    ({"loss": "mse"}, "loss: unknown loss 'mse'; choose bce, masked_bce"),
    ({"uncertain": "maybe"}, "uncertain: unknown policy 'maybe'; choose ignore, zeros, ones, selftrained"),
    ({"normalization": "zscore"}, "unknown normalization 'zscore'"),
    ({"backbone": "inception_v3", "image_size": 64}, "inception_v3 needs at least 75 px"),
    ({"preset": "tiny", "weights": "imagenet"},
     "weights: the tiny backbone has no pretrained weights; use weights=none"),
    ({"findings": "findings_nonesuch"}, "no list 'findings_nonesuch'"),
])
def test_bad_settings_are_refused_by_name(values, match):
    with pytest.raises(CxrConfigError if "no list" not in match else CxrDataError, match=match):
        TrainConfig.from_mapping(values).resolved()


def test_ints_are_floats_where_floats_are_wanted():
    cfg = TrainConfig.from_mapping({"lr": 1, "rotation": 5}).resolved()
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.rotation == 5.0


def test_config_file_and_set(tmp_path):
    path = tmp_path / "best.toml"
    path.write_text('[train]\nlr = 1e-4\nloss = "focal"\nfocal_gamma = 1.5\ncrop_scale = [0.8, 1.0]\n')
    assert load_file(path) == {"lr": 1e-4, "loss": "focal", "focal_gamma": 1.5, "crop_scale": [0.8, 1.0]}
    (tmp_path / "flat.toml").write_text("epochs = 3\nbatch_size = 8\n")
    assert load_file(tmp_path / "flat.toml") == {"epochs": 3, "batch_size": 8}
    (tmp_path / "bad.toml").write_text("epochz = 3\n")
    with pytest.raises(CxrConfigError, match=r"bad.toml: unknown setting 'epochz'; did you mean 'epochs'"):
        load_file(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("epochs = \n")
    with pytest.raises(CxrDataError, match="broken.toml: invalid TOML"):
        load_file(tmp_path / "broken.toml")
    assert parse_set(["lr=1e-4", "crop_scale=[0.8,1.0]", "weights=none", "hflip=false", "steps_per_epoch=none"]) \
        == {"lr": 1e-4, "crop_scale": [0.8, 1.0], "weights": "none", "hflip": False, "steps_per_epoch": "none"}
    assert TrainConfig.from_mapping(parse_set(["steps_per_epoch=none"])).resolved().steps_per_epoch is None
    with pytest.raises(CxrConfigError, match="expected KEY=VALUE"):
        parse_set(["lr"])


def test_every_field_is_reachable_with_set():
    """`cxr-tf train --set` reaches every TrainConfig field (the named options are shortcuts)."""
    for name in FIELDS:
        assert name in parse_set([f"{name}=1"])


def test_resume_takes_only_what_may_change():
    saved = TrainConfig(records="r", out="o", preset="tiny", epochs=6).resolved().to_dict()
    cfg = for_resume(saved, {"out": "o", "epochs": 8, "verbose": 0})
    assert cfg.epochs == 8 and cfg.verbose == 0 and cfg.backbone == "tiny"
    assert for_resume(saved, {"out": "o"}).epochs == 6             # no --epochs: the run's own plan
    assert for_resume(saved, {"lr": saved["lr"], "weights": None}).lr == saved["lr"]   # same values are fine
    with pytest.raises(CxrConfigError, match="cannot change backbone when resuming"):
        for_resume(saved, {"backbone": "resnet50"})


def test_cli_config_precedence(tmp_path, monkeypatch):
    """Preset < --config < named options < --set, and only what the user typed counts as given."""
    import cxr_tf.training.train
    from cxr_tf.cli import main
    seen = {}

    def fake_train(cfg, resume=False, callbacks=None):
        seen["cfg"] = cfg
        return {"epoch": 0}
    monkeypatch.setattr(cxr_tf.training.train, "train", fake_train)
    monkeypatch.setattr("cxr_tf.cli.model._cam_callbacks", lambda cfg, run: [])
    (tmp_path / "c.toml").write_text("epochs = 3\nlr = 0.01\nbatch_size = 4\n")
    res = CliRunner().invoke(main, ["train", "--records", str(tmp_path), "--out", str(tmp_path / "run"),
                                    "--config", str(tmp_path / "c.toml"), "--lr", "0.02", "--preset", "tiny",
                                    "--set", "batch_size=2", "--uncertain", "Atelectasis=ones,Edema=multiclass,"
                                    "default=zeros"])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (3, 0.02, 2)
    assert cfg.given == {"records", "out", "epochs", "lr", "batch_size", "preset", "verbose", "uncertain"}
    resolved = cfg.resolved()
    assert resolved.weights == "none"
    assert resolved.uncertain == {"Atelectasis": "ones", "Edema": "multiclass", "default": "zeros"}
    with pytest.raises(CxrConfigError, match="not among the findings"):
        TrainConfig(preset="tiny", uncertain={"Nope": "ones"}).resolved()
