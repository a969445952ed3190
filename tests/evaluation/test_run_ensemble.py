"""Ensembles: one flat model whose output is the mean of its members' (checked by hand), that
keeps the findings, saves and loads, explains with Grad-CAM; the top-k checkpoints of a run by a
validation metric; and evaluate on the ensemble's folder."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.models import build_model, cam_layer, ensemble, findings_of, load_model, save_model


def test_mean_by_hand_flat_save_load_and_gradcam(tmp_path):
    keras.utils.set_random_seed(0)
    a = build_model("tiny", weights=None, findings=["A", "B"], stored_size=80)
    b = build_model("tiny", weights=None, findings=["A", "B"], multiclass=["B"], stored_size=80)
    c = build_model("tiny", weights=None, findings=["A", "B"], stored_size=80)
    e = ensemble([a, b, c])
    x = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 1)).astype(np.float32)
    want = np.mean([m.predict(x, verbose=0) for m in (a, b, c)], axis=0)
    np.testing.assert_allclose(e.predict(x, verbose=0), want, rtol=1e-6, atol=1e-7)
    assert not any(isinstance(layer, keras.Model) for layer in e.layers)
    assert findings_of(e) == ["A", "B"] and cam_layer(e) == "m0_tiny_relu"
    save_model(e, tmp_path / "e.keras")
    back = load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-6, atol=1e-7)
    from cxr_tf.explain import heatmaps
    assert heatmaps(back, x[:2], [0, 1], "gradcam").shape == (2, 64, 64)
    with pytest.raises(CxrConfigError, match="an ensemble has several"):
        heatmaps(back, x[:1], [0], "cam")
    with pytest.raises(CxrConfigError, match="different findings"):
        ensemble([a, build_model("tiny", weights=None, findings=["A", "C"])])


def test_top_k_checkpoints_of_a_run_and_evaluate(records_dir, tmp_path, tiny_config):
    from cxr_tf.cli import main
    from cxr_tf.evaluation.run_ensemble import score
    from cxr_tf.training.train import train
    run = tmp_path / "run"
    state = train(tiny_config(records_dir, run, epochs=3, keep_checkpoints=2, select_by="val_auroc_mean",
                              tb_cam_images=0))
    on_disk = sorted(p.name for p in (run / "checkpoints").glob("*.keras"))
    top = sorted(state["history"], key=lambda r: -r["val_auroc_mean"])[:2]
    assert {t["epoch"] for t in state["top"]} == {t["epoch"] for t in top}
    assert set(on_disk) == {f"epoch-{t['epoch']:03d}.keras" for t in state["top"]} | {"epoch-003.keras"}
    res = CliRunner().invoke(main, ["ensemble", str(run), "--top-k", "2", "--out", str(tmp_path / "ens")])
    assert res.exit_code == 0, res.output
    members = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]
    assert sorted(m["epoch"] for m in members) == sorted(t["epoch"] for t in top)
    assert [m["score"] for m in members] == sorted((score(r, "mean_auroc") for r in top), reverse=True)
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "ens"), "--split", "test",
                                    "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ens" / "metrics.json").read_text())["images"] > 0
