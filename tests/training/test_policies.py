"""Uncertainty policies: their targets (NumPy and the pipeline), the loss mask, label smoothing's
ranges, the U-MultiClass head's output contract and loss by hand, and U-SelfTrained's soft
targets end to end on a phantom CheXpert run."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from cxr_tf.vocab.findings import IGNORE, LSR_RANGES, UNCERTAIN_CLASS, metric_targets, parse_policies, train_targets

NAMES = ["A", "B", "C", "D"]
LABELS = np.array([[1.0, 0.0, -1.0, np.nan], [-1.0, -1.0, -1.0, -1.0]], np.float32)


@pytest.mark.parametrize("policy,uncertain_target", [
    ("ignore", IGNORE), ("zeros", 0.0), ("ones", 1.0), ("selftrained", IGNORE), ("multiclass", UNCERTAIN_CLASS),
    ("ones_lsr", 0.7), ("zeros_lsr", 0.15)])
def test_each_policy_on_targets_numpy_and_pipeline(policy, uncertain_target):
    from cxr_tf.pipeline import targets
    want = np.array([[1, 0, uncertain_target, 0], [uncertain_target] * 4], np.float32)
    np.testing.assert_allclose(train_targets(LABELS, policy, "zeros", NAMES), want)
    np.testing.assert_allclose(targets(tf.constant(LABELS), policy, "zeros", NAMES).numpy(), want)
    blank_ignored = train_targets(LABELS, policy, "ignore", NAMES)
    assert blank_ignored[0, 3] == IGNORE and blank_ignored[0, 0] == 1


def test_per_finding_policies_and_the_cli_spelling():
    mapping = parse_policies("A=ones, C=multiclass, default=zeros")
    assert mapping == {"A": "ones", "C": "multiclass", "default": "zeros"}
    np.testing.assert_allclose(train_targets(LABELS, mapping, "zeros", NAMES)[1], [1, 0, UNCERTAIN_CLASS, 0])
    np.testing.assert_allclose(metric_targets(LABELS), [[1, 0, IGNORE, 0], [IGNORE] * 4])   # certain labels only


def test_lsr_draws_inside_its_ranges_per_batch():
    from cxr_tf.pipeline import targets
    labels = tf.constant(np.full((4000, 2), -1.0, np.float32))
    y = targets(labels, {"A": "ones_lsr", "B": "zeros_lsr"}, "zeros", ["A", "B"], seed=tf.constant([3, 4], tf.int64))
    y2 = targets(labels, {"A": "ones_lsr", "B": "zeros_lsr"}, "zeros", ["A", "B"], seed=tf.constant([3, 5], tf.int64))
    for col, name in enumerate(("ones_lsr", "zeros_lsr")):
        lo, hi = LSR_RANGES[name]
        values = y.numpy()[:, col]
        assert lo <= values.min() and values.max() <= hi and values.std() > 0.05
        assert abs(values.mean() - (lo + hi) / 2) < 0.01
    assert not np.allclose(y, y2)                      # a new draw for another batch


def test_masked_loss_skips_ignored_entries_only():
    from cxr_tf.models import losses
    y = np.array([[1.0, IGNORE, 0.0]], np.float32)
    p = np.array([[0.8, 0.1, 0.3]], np.float32)
    want = -(math.log(0.8) + math.log(0.7)) / 2
    assert float(losses.get("masked_bce")(y, p)) == pytest.approx(want, rel=1e-5)


def test_multiclass_loss_by_hand():
    from cxr_tf.models.losses import MulticlassLoss
    logits = np.array([[[0.2, 1.0, -0.5], [1.5, 0.5, 2.0], [0.0, 0.3, 9.0]]], np.float32)   # [1, 3, 3]
    y = np.array([[1.0, UNCERTAIN_CLASS, IGNORE]], np.float32)
    loss = MulticlassLoss([False, True, True])
    p0 = 1 / (1 + math.exp(-(1.0 - 0.2)))                                  # binary: sigmoid(l1 - l0)
    l1 = np.array([1.5, 0.5, 2.0])
    ce = -(l1[2] - math.log(np.exp(l1).sum()))                             # 3-way CE, class 2
    assert float(loss(y, logits)) == pytest.approx((-math.log(p0) + ce) / 2, rel=1e-5)


def test_multiclass_head_keeps_the_one_probability_contract(tmp_path):
    import keras

    from cxr_tf.models import (build_model, contract_model, findings_of, load_model, save_model,
                               training_model)
    keras.utils.set_random_seed(0)
    model = build_model("tiny", weights=None, findings=NAMES, multiclass=["B", "C"])
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 1)).astype(np.float32)
    probs = model.predict(x, verbose=0)
    train = training_model(model)
    logits = train.predict(x, verbose=0)
    assert probs.shape == (3, 4) and logits.shape == (3, 4, 3)
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, soft[..., 1] / (soft[..., 0] + soft[..., 1]), rtol=1e-5, atol=1e-6)
    back = contract_model(train)
    np.testing.assert_allclose(back.predict(x, verbose=0), probs, rtol=1e-6)
    save_model(back, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert findings_of(loaded) == NAMES
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probs, rtol=1e-6)
    from cxr_tf.explain import heatmaps
    for method in ("cam", "gradcam"):
        maps = heatmaps(loaded, x[:2], [1, 2], method)
        assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()


def _chexpert_config(records, out, **kw):
    from cxr_tf.training.train import TrainConfig
    base = dict(records=str(records), out=str(out), preset="tiny", dataset="chexpert", epochs=1, batch_size=8,
                image_size=48, verbose=0, strategy="default", tb_cam_images=0, loss="masked_bce")
    return TrainConfig(**{**base, **kw})


def test_multiclass_run_trains_and_evaluates(chexpert_records, tmp_path):
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.models import findings_of, load_model
    from cxr_tf.training.train import train
    out = tmp_path / "mc"
    train(_chexpert_config(chexpert_records, out, uncertain={"Cardiomegaly": "multiclass",
                                                               "Pleural Effusion": "multiclass", "default": "ones"}))
    model = load_model(out / "model.keras")
    assert model.output_shape == (None, 14) and findings_of(model)[2] == "Cardiomegaly"
    m = evaluate(out, split="val", n_boot=20, figures=False)
    assert len(m["per_class"]) == 15


def test_selftrained_relabels_uncertain_entries_with_probabilities(chexpert_records, tmp_path):
    from cxr_tf.models import load_model
    from cxr_tf.pipeline import make_dataset
    from cxr_tf.records.reader import RecordsDir
    from cxr_tf.training.selftrain import PHASE1, SOFT
    from cxr_tf.training.train import train
    out = tmp_path / "st"
    rec = RecordsDir(chexpert_records)
    counts = rec.splits["train"]["uncertain"]
    chosen = sorted(counts, key=lambda f: -counts[f])[:2]          # the two with most uncertain entries
    assert counts[chosen[1]] > 0
    state = train(_chexpert_config(chexpert_records, out, uncertain={**{f: "selftrained" for f in chosen},
                                                                       "default": "zeros"}))
    assert state["epoch"] == 1 and (out / PHASE1 / "model.keras").is_file() and (out / "model.keras").is_file()
    phase1 = json.loads((out / PHASE1 / "config.json").read_text())
    others = [f for f in rec.findings if f not in chosen]
    assert phase1["uncertain"][chosen[0]] == "ignore" and phase1["uncertain"][others[0]] == "zeros"
    soft = pd.read_csv(out / SOFT, dtype={"image_id": str}).set_index("image_id")
    train_rows = rec.split_frame("train").set_index("image_id")
    for f in chosen:
        uncertain = train_rows[f] == -1
        assert uncertain.any()
        assert soft.loc[uncertain[uncertain].index, f].between(0, 1).all()
        assert soft.loc[uncertain[~uncertain].index, f].isna().all()
    # the soft targets are the phase-1 model's probabilities, and phase 2's pipeline feeds them
    names = rec.findings
    ds = make_dataset(rec.path, "train", training=False, batch_size=64, image_size=48, findings=names,
                      uncertain=json.loads((out / "config.json").read_text())["uncertain"], soft_targets=soft)
    y = np.concatenate([b[1].numpy() for b in ds])
    col = names.index(chosen[0])
    unc = train_rows[chosen[0]].to_numpy() == -1
    np.testing.assert_allclose(y[unc, col], soft.loc[train_rows.index[unc], chosen[0]], rtol=1e-6)
    probs = load_model(out / PHASE1 / "model.keras").predict(
        make_dataset(rec.path, "train", training=False, batch_size=64, image_size=48).map(lambda x, y: x), verbose=0)
    np.testing.assert_allclose(y[unc, col], probs[unc, col], rtol=1e-5, atol=1e-6)
