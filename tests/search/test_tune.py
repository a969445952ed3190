"""Hyperparameter search: the space file (parsing and each refusal, in pure Python), trial values
-> TrainConfig (augmentation strength, the conditional focal_gamma), a real random search and its
resumption, a refused combination recorded as a FAILED trial (grid search, MirroredStrategy),
best.toml -> TrainConfig and `cxr-tf train`, the command line, and keras-tuner's distributed mode."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import tomllib

import keras_tuner as kt
import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.training.config import TrainConfig, load_file
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.search.tune import OBJECTIVE, SPACE, augment_fields, load_space, toml_table, tune

TINY = """
[fixed]
preset = "tiny"
weights = "none"
epochs = 1
batch_size = 8
image_size = 32
strategy = "default"
shuffle_buffer = 64
"""
SPACE_TEXT = TINY + """
[hyperparameters.lr]
min = 1e-3
max = 1e-2
sampling = "log"

[hyperparameters.loss]
choices = ["masked_bce", "focal"]

[hyperparameters.focal_gamma]
min = 1.0
max = 3.0
step = 1.0
parent_name = "loss"
parent_values = ["focal"]

[hyperparameters.augment]
min = 0.0
max = 1.0
step = 0.5

[augment]
rotation = 10.0
crop_scale = { base = [1.0, 1.0], per_unit = [-0.3, 0.0] }
"""


def _space(tmp_path, text, name="space.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---- the space file, pure Python

def test_default_space():
    s = load_space()
    assert s.path == str(SPACE)
    assert s.names[:3] == ["lr", "batch_size", "loss"] and "uncertain" not in s.names  # NIH: no uncertain labels
    lr = s.params[0]
    assert (lr.min, lr.max, lr.sampling, lr.choices) == (1e-5, 1e-2, "log", None)
    gamma = s.params[s.names.index("focal_gamma")]
    assert gamma.parent_name == "loss" and gamma.parent_values == ("focal",)
    assert s.names.index("focal_gamma") > s.names.index("loss")
    assert s.augment["rotation"] == (0.0, 10.0) and s.augment["crop_scale"] == ([1.0, 1.0], [-0.3, 0.0])
    cxp = load_space(overrides={"preset": "chexpert"})
    assert cxp.params[cxp.names.index("uncertain")].choices == ("ignore", "zeros", "ones")
    demo = load_space(demo=True)
    assert "backbone" not in demo.names and demo.fixed["preset"] == "tiny" and demo.fixed["epochs"] == 2
    assert demo.params[demo.names.index("image_size")].choices == (32, 48, 64)


def test_parsing_imports_no_tensorflow():
    code = ("import sys\nfrom cxr_tf.search.tune import load_space\nload_space(); load_space(demo=True)\n"
            "loaded = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]\n"
            "assert not loaded, loaded")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]


def test_values_to_config():
    s = load_space(overrides={"records": "/r"})
    assert augment_fields(s.augment, 0.0) == {"rotation": 0.0, "brightness": 0.0, "contrast": 0.0,
                                               "crop_scale": [1.0, 1.0]}
    values = s.train_values({"lr": 3e-4, "batch_size": 32, "loss": "focal", "focal_gamma": 2.5,
                             "backbone": "resnet50", "image_size": 224, "augment": 0.5, "dropout": 0.1})
    assert values == {"preset": "chexnet", "epochs": 4, "select_by": "val_auroc_mean", "records": "/r", "lr": 3e-4,
                      "batch_size": 32, "loss": "focal", "focal_gamma": 2.5, "backbone": "resnet50",
                      "image_size": 224, "rotation": 5.0, "brightness": 0.1, "contrast": 0.1,
                      "crop_scale": [0.85, 1.0], "dropout": 0.1}
    cfg = s.trial_config({"augment": 1.0, "dropout": 0.30000000000000004}).resolved()
    assert cfg.rotation == 10.0 and cfg.crop_scale == [0.7, 1.0] and cfg.dropout == 0.3


def test_conditional_focal_gamma():
    s = load_space()
    values = s.declare(kt.HyperParameters())
    assert values["loss"] == "masked_bce" and "focal_gamma" not in values  # inactive: keeps TrainConfig's
    hp = kt.HyperParameters()
    hp.values["loss"] = "focal"
    values = s.declare(hp)
    assert values["loss"] == "focal" and values["focal_gamma"] == 2.0
    assert s.trial_config(values).focal_gamma == 2.0


BAD = {
    "unknown name": ("[hyperparameters.learning_rate]\nmin = 0.1\nmax = 0.2", "did you mean 'lr'"),
    "not searched": ("[hyperparameters.preset]\nchoices = ['tiny', 'chexnet']", "same for every trial"),
    "bad type": ("[hyperparameters.lr]\nchoices = ['fast', 'slow']", "lr: expected float"),
    "min > max": ("[hyperparameters.lr]\nmin = 0.1\nmax = 0.01", "min must be below max"),
    "min = max": ("[hyperparameters.dropout]\nmin = 0.1\nmax = 0.1", "a single value belongs in [fixed]"),
    "empty choices": ("[hyperparameters.loss]\nchoices = []", "non-empty list"),
    "mixed choices": ("[hyperparameters.dropout]\nchoices = [0, 0.5]", "all of one type"),
    "int range": ("[hyperparameters.plateau_patience]\nmin = 0\nmax = 2.5", "max must be an integer"),
    "unknown key": ("[hyperparameters.dropout]\nmin = 0.0\nmax = 0.5\nstepp = 0.1", "unknown key 'stepp'"),
    "no range": ("[hyperparameters.dropout]\nstep = 0.1", "either choices"),
    "log at 0": ("[hyperparameters.lr]\nmin = 0.0\nmax = 0.1\nsampling = 'log'", "needs min > 0"),
    "out of range": ("[hyperparameters.dropout]\nmin = 0.0\nmax = 1.0", "must be in [0, 1)"),
    "bad choice": ("[hyperparameters.loss]\nchoices = ['bce', 'nonesuch']", "unknown loss 'nonesuch'"),
    "not a number": ("[hyperparameters.loss]\nmin = 1\nmax = 2", "loss is not a number"),
    "uncertain on NIH": ("[hyperparameters.uncertain]\nchoices = ['zeros', 'ones']", "has no uncertain labels"),
    "selftrained": ("[hyperparameters.uncertain]\nchoices = ['ignore', 'selftrained']", "two phases",
                    {"dataset": "chexpert"}),
    "parent values": ("[hyperparameters.loss]\nchoices = ['bce', 'masked_bce']\n[hyperparameters.focal_gamma]\n"
                      "min = 1.0\nmax = 2.0\nparent_name = 'loss'\nparent_values = ['focal']",
                      "must be among the choices of loss"),
    "parent range": ("[hyperparameters.dropout]\nmin = 0.0\nmax = 0.5\n[hyperparameters.focal_gamma]\nmin = 1.0\n"
                     "max = 2.0\nparent_name = 'dropout'\nparent_values = [0.0]", "a parent must have choices"),
    "nested": ("[hyperparameters.loss]\nchoices = ['bce', 'focal']\n[hyperparameters.dropout]\nchoices = [0.0, 0.5]\n"
               "parent_name = 'loss'\nparent_values = ['focal']\n[hyperparameters.focal_gamma]\nmin = 1.0\n"
               "max = 2.0\nparent_name = 'dropout'\nparent_values = [0.5]", "conditional itself; one level only"),
    "self parent": ("[hyperparameters.loss]\nchoices = ['bce', 'focal']\nparent_name = 'loss'\n"
                    "parent_values = ['focal']", "not another hyperparameter"),
    "no parent": ("[hyperparameters.focal_gamma]\nmin = 1.0\nmax = 2.0\nparent_name = 'loss'\n"
                  "parent_values = ['focal']", "not another hyperparameter"),
    "augment table": ("[hyperparameters.augment]\nmin = 0.0\nmax = 1.0", "needs an [augment] table"),
    "augment field": ("[hyperparameters.augment]\nmin = 0.0\nmax = 1.0\n[augment]\nrotate = 10.0",
                      "did you mean 'rotation'"),
    "augment value": ("[hyperparameters.augment]\nmin = 0.0\nmax = 1.0\n[augment]\nrotation = 'lots'",
                      "a number or a list"),
    "augment crop": ("[hyperparameters.augment]\nmin = 0.0\nmax = 4.0\n[augment]\ncrop_scale = "
                     "{ base = [1.0, 1.0], per_unit = [-0.3, 0.0] }", "crop_scale: must be [min, max]"),
    "in fixed too": ("[hyperparameters.epochs]\nchoices = [1, 2]", "also in [fixed]"),
    "top table": ("[hyperparams.lr]\nmin = 0.1\nmax = 0.2", "unknown top-level table 'hyperparams'"),
    "nothing": ("", "nothing to search"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_space_refusals(tmp_path, case):
    text, message, *overrides = BAD[case]
    path = _space(tmp_path, TINY + "\n" + text)
    with pytest.raises(CxrConfigError) as err:
        load_space(path, *overrides)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_fixed_and_set_refusals(tmp_path):
    path = _space(tmp_path, SPACE_TEXT)
    with pytest.raises(CxrConfigError, match=r"\[fixed\].*unknown setting 'learning_rate'"):
        load_space(path, {"learning_rate": 0.1})
    with pytest.raises(CxrConfigError, match=r"\[fixed\] out: trials write no run directory"):
        load_space(path, {"out": "x"})
    with pytest.raises(CxrConfigError, match=r"\[hyperparameters.lr\]: lr is also in \[fixed\] \(or --set\)"):
        load_space(path, {"lr": 0.1})
    with pytest.raises(CxrConfigError, match=r"\[augment\] rotation: also in \[fixed\]"):
        load_space(path, {"rotation": 3.0})
    with pytest.raises(CxrConfigError, match=r"\[fixed\] weights: the tiny backbone has no pretrained weights"):
        load_space(path, {"weights": "imagenet"})
    with pytest.raises(CxrDataError, match="invalid TOML"):
        load_space(_space(tmp_path, "[fixed\n", "broken.toml"))


def test_grid_needs_steps(tmp_path):
    with pytest.raises(CxrConfigError, match=r"--search grid needs a step .*\[hyperparameters.lr\]"):
        load_space().require_steps()
    load_space(_space(tmp_path, TINY + "[hyperparameters.dropout]\nmin = 0.0\nmax = 0.2\nstep = 0.1\n"
                                       "[hyperparameters.loss]\nchoices = ['bce', 'focal']")).require_steps()
    with pytest.raises(CxrConfigError, match="needs a step"):
        tune("/nonexistent", "/nonexistent", search="grid")


def test_toml_writer_round_trip():
    values = {"records": 'C:\\data\\"nih"', "lr": 1e-05, "epochs": 3, "hflip": False, "crop_scale": [0.85, 1.0],
              "uncertain": {"Edema": "ones", "default": "ignore"}, "dropout": 0.0, "skipped": None}
    text = toml_table("train", values, "a header\nline two")
    assert text.startswith("# a header\n# line two\n[train]\n")
    assert tomllib.loads(text)["train"] == {k: v for k, v in values.items() if v is not None}


# ---- real searches (tiny preset, 32 px, one epoch)

def test_random_search_resume_and_retrain(tmp_path, records_dir):
    space, out = _space(tmp_path, SPACE_TEXT), tmp_path / "tune"
    lines = []
    first = tune(out, records_dir, trials=2, space=space, progress=lines.append)
    assert first["builds"] == 2 and first["trials"] == 2 and first["completed"] == 2 and len(lines) == 2
    assert lines[0].startswith("trial 0 (1 of 2) COMPLETED: val_auroc_mean ")
    table = pd.read_csv(out / "trials.csv")
    assert list(table.columns) == ["trial_id", "status", "lr", "loss", "augment", "focal_gamma", OBJECTIVE,
                                   "best_epoch", "message"]
    assert list(table["status"]) == ["COMPLETED"] * 2 and table[OBJECTIVE].between(0, 1).all()
    assert (table["best_epoch"] == 1).all()
    assert table["focal_gamma"].isna().tolist() == (table["loss"] != "focal").tolist()

    # the objective is what ValidationMetrics logged (keras-tuner's trial.json holds the same number)
    best = first["best"]
    trial = json.loads((out / "keras_tuner" / f"trial_{best['trial_id']}" / "trial.json").read_text())
    assert trial["score"] == pytest.approx(best[OBJECTIVE]) == pytest.approx(table[OBJECTIVE].max())

    # best.toml -> TrainConfig: the best trial's values, resolved into fields
    loaded = load_file(out / "best.toml")
    s = load_space(space, {"records": str(records_dir.resolve())})
    expected = s.trial_config(best["hyperparameters"])
    assert loaded == expected.given_values() and loaded["records"] == str(records_dir.resolve())
    assert "augment" not in loaded and loaded["rotation"] == 10.0 * best["hyperparameters"]["augment"]
    assert TrainConfig.from_mapping(loaded).resolved().to_dict() == expected.resolved().to_dict()
    header = (out / "best.toml").read_text().splitlines()[:3]
    assert f"trial {best['trial_id']}: {OBJECTIVE} = {best[OBJECTIVE]:.6f}" in header[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["trial_id"] == best["trial_id"] and summary["trials"] == 2

    # rerun with more trials: exactly one new trial; the first two are kept as they were
    again = tune(out, records_dir, trials=3, space=space)
    assert again["builds"] == 1 and again["trials"] == 3
    table3 = pd.read_csv(out / "trials.csv")
    pd.testing.assert_frame_equal(table3.iloc[:2], table)
    assert tune(out, records_dir, trials=3, space=space)["builds"] == 0
    with pytest.raises(CxrDataError, match="different search"):
        tune(out, records_dir, trials=3, space=space, search="bayesian")
    with pytest.raises(CxrDataError, match="different space"):
        tune(out, records_dir, trials=3, space=space, overrides={"epochs": 2})

    # and `cxr-tf train --config best.toml` retrains with it (the best of the three trials now)
    best = json.loads((out / "summary.json").read_text())["best"]
    assert best[OBJECTIVE] == pytest.approx(table3[OBJECTIVE].max())
    res = CliRunner().invoke(main, ["train", "--config", str(out / "best.toml"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    run_cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert run_cfg == s.trial_config(best["hyperparameters"]).resolved().to_dict() | {"out": str(tmp_path / "run"),
                                                                                     "verbose": 1}


def test_refused_combination_is_a_failed_trial(tmp_path, records_dir):
    """Plain bce cannot ignore entries: on grid search (bce first) that trial is FAILED with the
    reason, and the search goes on; the trials run under MirroredStrategy (two logical CPUs)."""
    space = _space(tmp_path, TINY.replace('"default"', '"mirrored"') + 'blank = "ignore"\n'
                   "[hyperparameters.loss]\nchoices = ['bce', 'masked_bce']\n")
    res = tune(tmp_path / "grid", records_dir, search="grid", space=space)
    table = pd.read_csv(tmp_path / "grid" / "trials.csv")
    assert list(table["loss"]) == ["bce", "masked_bce"] and list(table["status"]) == ["FAILED", "COMPLETED"]
    assert table["message"][0].startswith("loss: plain bce cannot ignore entries (blank labels are ignored)")
    assert res["builds"] == 1 and res["failed"] == 1 and res["best"]["hyperparameters"] == {"loss": "masked_bce"}


def test_cli(tmp_path, records_dir):
    bad = _space(tmp_path, TINY + "[hyperparameters.lr]\nmin = 0.1\nmax = 0.01\n", "bad.toml")
    res = CliRunner().invoke(main, ["tune", "--records", str(records_dir), "--out", str(tmp_path / "t"),
                                    "--space", str(bad)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {bad}: [hyperparameters.lr]: min must be below max")
    res = CliRunner().invoke(main, ["tune", "--out", str(tmp_path / "t")])
    assert res.exit_code == 2 and res.output == "error: --records: is required (or use --demo)\n"
    space = _space(tmp_path, SPACE_TEXT)
    res = CliRunner().invoke(main, ["tune", "--records", str(records_dir), "--out", str(tmp_path / "t"),
                                    "--space", str(space), "--trials", "1", "--set", "dropout=0.1"])
    assert res.exit_code == 0, res.output
    assert "trial 0 (1 of 1) COMPLETED" in res.output and "1 trial(s) (1 completed, 0 failed)" in res.output
    assert f"retrain: cxr-tf train --config {tmp_path / 't'}/best.toml --out RUN" in res.output
    assert load_file(tmp_path / "t" / "best.toml")["dropout"] == 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers(tmp_path, records_dir):
    """keras-tuner's distributed mode: a chief oracle and two worker tuners, separate processes on
    127.0.0.1; the workers' trials land in the shared directory, the chief writes the tables."""
    space, out = _space(tmp_path, SPACE_TEXT), tmp_path / "dist"
    args = ["-c", "from cxr_tf.cli import main; main()", "tune", "--records", str(records_dir), "--out", str(out),
            "--space", str(space), "--trials", "3"]
    port = str(_free_port())
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": port, "TF_CPP_MIN_LOG_LEVEL": "3", "CXR_TF_PROGRESS": "0"}
        with open(tmp_path / f"{tuner_id}.log", "w") as log:
            procs[tuner_id] = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for p in procs.values():
            p.wait(timeout=180)
    finally:
        for p in procs.values():
            p.kill()
    outputs = {k: (tmp_path / f"{k}.log").read_text() for k in procs}
    for k, p in procs.items():
        assert p.returncode == 0, f"{k}:\n{outputs[k][-3000:]}"
    table = pd.read_csv(out / "trials.csv")
    assert list(table["trial_id"]) == [0, 1, 2] and (table["status"] == "COMPLETED").all()
    assert all((out / "keras_tuner" / f"trial_{i}" / "checkpoint.weights.h5").is_file() for i in range(3))
    assert {p.name for p in (out / "keras_tuner").glob("tuner*.json")} == {"tuner0.json", "tuner1.json"}
    assert "3 trial(s) (3 completed, 0 failed)" in outputs["chief"] and (out / "best.toml").is_file()
    assert all("this worker's trials are done" in outputs[k] for k in ("tuner0", "tuner1"))
