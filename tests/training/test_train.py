"""Training: the run directory, resume after a kill (to the planned epoch), what the command line
may change on resume, start-up failures that leave no trap behind, MirroredStrategy on two
logical CPUs, TensorBoard scalars; evaluation on a tiny phantom run."""

import json

import keras
import pandas as pd
import pytest
import tensorflow as tf
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.core.errors import CxrDataError
from cxr_tf.training.train import train


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_directory(tiny_run, records_dir):
    c = json.loads((tiny_run / "config.json").read_text())
    assert c["backbone"] == "tiny" and c["image_size"] == 48 and c["normalization"] == "imagenet"
    assert c["weights"] == "none" and c["dataset"] == "chestxray14"
    assert c["lr"] == 1e-3 and c["beta_1"] == 0.9 and c["beta_2"] == 0.999 and c["loss"] == "bce"
    assert len(c["findings"]) == 14
    split = json.loads((tiny_run / "split_summary.json").read_text())
    summary = json.loads((records_dir / "summary.json").read_text())
    assert split["splits"]["train"]["images"] == summary["splits"]["train"]["images"]
    state = json.loads((tiny_run / "state.json").read_text())
    assert state["epoch"] == 2 and (tiny_run / state["checkpoint"]).is_file()
    kept = {tiny_run / t["checkpoint"] for t in state["top"]} | {tiny_run / state["checkpoint"]}
    assert set((tiny_run / "checkpoints").glob("*.keras")) == kept and len(state["top"]) == 1
    assert (tiny_run / "model.keras").is_file() and not list(tiny_run.rglob("*partial*"))
    hist = pd.read_csv(tiny_run / "history.csv")
    assert {"loss", "val_loss", "val_auroc_mean", "learning_rate", "val_auroc_Cardiomegaly"} <= set(hist.columns)
    timing = json.loads((tiny_run / "timing.json").read_text())
    assert timing["first_step_s"] > 0


def test_tensorboard_scalars(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set()
    for sub in ("train", "validation"):
        acc = EventAccumulator(str(tiny_run / "logs" / sub))
        acc.Reload()
        tags |= set(acc.Tags().get("tensors", [])) | set(acc.Tags().get("scalars", []))
    assert {"epoch_loss", "epoch_learning_rate", "epoch_auroc_mean", "epoch_auroc_Effusion"} <= tags
    cam = EventAccumulator(str(tiny_run / "logs" / "cam"), size_guidance={"tensors": 0})
    cam.Reload()
    images = [t for t in cam.Tags().get("tensors", []) if t.startswith("gradcam/")]
    assert len(images) == 4 and len(cam.Tensors(images[0])) == 2        # 4 images, logged every epoch


def test_existing_run_needs_resume(tiny_run, records_dir, tiny_config):
    with pytest.raises(CxrDataError, match="--resume"):
        train(tiny_config(records_dir, tiny_run))


class _Kill(keras.callbacks.Callback):
    """Simulate a kill a few steps into the epoch after ``after`` complete epochs."""

    def __init__(self, after=1):
        super().__init__()
        self.after = after

    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations.numpy() > self.params["steps"] * self.after + 2:
            raise KeyboardInterrupt(f"simulated kill in epoch {self.after + 1}")


def test_resume_after_kill(records_dir, tmp_path, tiny_config):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(records_dir, out, epochs=3), callbacks=[_Kill()])
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1                      # epoch 2 never completed
    steps = len(pd.read_csv(records_dir / "manifest.csv").query("split == 'train'")) // 8
    res = _cli("train", "--out", out, "--resume", "--lr", "0.1")       # the optimizer is the run's
    assert res.exit_code == 2 and "cannot change lr when resuming" in res.output
    res = _cli("train", "--out", out, "--resume")    # no --epochs: the run's own 3, not the CLI's 10
    assert res.exit_code == 0, res.output
    final = json.loads((out / "state.json").read_text())
    assert final["epoch"] == 3 and [h["epoch"] for h in final["history"]] == [1, 2, 3]
    from cxr_tf.models import load_model
    ckpt = load_model(out / final["checkpoint"], compile=True)
    assert int(ckpt.optimizer.iterations.numpy()) == 3 * steps   # optimizer state continued
    assert "plateau" in final


def test_cli_preset_defaults_and_errors_in_cli_terms(records_dir, tmp_path):
    """`--preset tiny` takes the preset's weights (none); a bad choice is one line in CLI terms and
    leaves no run directory behind."""
    out = tmp_path / "run"
    res = _cli("train", "--records", records_dir, "--out", out, "--preset", "tiny", "--weights", "imagenet")
    assert res.exit_code == 2
    assert res.output.strip() == "error: --weights: the tiny backbone has no pretrained weights; use --weights none"
    assert not out.exists()
    res = _cli("train", "--records", records_dir, "--out", out, "--preset", "tiny", "--set", "findings=['Nope']")
    assert res.exit_code == 2 and "Nope" in res.output and not (out / "config.json").exists()
    res = _cli("train", "--records", records_dir, "--out", out, "--preset", "tiny", "--epochs", "1",
               "--image-size", "48", "--batch-size", "8", "--set", "tb_cam_images=0", "--set", "strategy='default'")
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["weights"] == "none" and cfg["epochs"] == 1 and cfg["tb_cam_images"] == 0


def test_a_run_that_never_finished_an_epoch_starts_again(records_dir, tmp_path, tiny_config):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(records_dir, out, epochs=1, tb_cam_images=0), callbacks=[_Kill(after=0)])
    assert (out / "config.json").is_file() and not (out / "state.json").exists()
    with pytest.raises(CxrDataError, match="no epoch completed; start it again without --resume"):
        train(tiny_config(records_dir, out, epochs=1), resume=True)
    state = train(tiny_config(records_dir, out, epochs=1, tb_cam_images=0))
    assert state["epoch"] == 1


def test_mirrored_strategy_training(records_dir, tmp_path, tiny_config):
    assert len(tf.config.list_logical_devices("CPU")) == 2
    state = train(tiny_config(records_dir, tmp_path / "mirrored", epochs=1, strategy="auto"))
    assert state["epoch"] == 1
    env = json.loads((tmp_path / "mirrored" / "environment.json").read_text())
    assert len([d for d in env["devices"] if "CPU" in d]) == 2


def test_evaluate_tiny_run(tiny_run):
    from cxr_tf.evaluation.evaluate import evaluate
    m = evaluate(tiny_run, split="test", n_boot=50)
    table = pd.read_csv(tiny_run / "metrics.csv")
    assert len(table) == 15 and table["finding"].iloc[-1] == "mean"
    ok = table["auroc"].notna()
    assert ((table.loc[ok, "auroc_ci_low"] <= table.loc[ok, "auroc"] + 1e-9) &
            (table.loc[ok, "auroc"] <= table.loc[ok, "auroc_ci_high"] + 1e-9)).all()
    assert (table["baseline_auroc"] == 0.5).all() and (table["baseline_recall"] == 0).all()
    preds = pd.read_csv(tiny_run / "predictions_test.csv")
    assert "patient" not in preds.columns and len(preds) == m["images"]
    assert set(json.loads((tiny_run / "thresholds.json").read_text())["thresholds"]) == set(m["findings"])
    from sklearn.metrics import roc_auc_score
    f = table.loc[ok, "finding"].iloc[0]
    assert roc_auc_score(preds[f"label_{f}"], preds[f"prob_{f}"]) == pytest.approx(table.loc[ok, "auroc"].iloc[0])
    for fig in ("roc_curves.png", "pr_curves.png", "confusion_matrices.png"):
        assert (tiny_run / fig).stat().st_size > 10_000


def test_mixed_precision_run(records_dir, tmp_path, tiny_config):
    import keras
    try:
        state = train(tiny_config(records_dir, tmp_path / "mp", epochs=1, mixed_precision=True, tb_cam_images=0))
        assert state["epoch"] == 1
        from cxr_tf.models import load_model
        m = load_model(tmp_path / "mp" / "model.keras")
        assert m.get_layer("predictions").dtype_policy.compute_dtype == "float32"   # sigmoid in float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
