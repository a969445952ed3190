"""``cxr-tf evaluate``: predictions per image, metrics with bootstrap CIs, thresholds chosen on the
validation split, a naive baseline beside the model, and figures.

Writes into the run directory: ``predictions_<split>.csv``, ``metrics.json``, ``metrics.csv``,
``thresholds.json``, ``roc_curves.png``, ``pr_curves.png`` and ``confusion_matrices.png``, and
stores the thresholds inside ``model.keras`` (:func:`cxr_tf.models.thresholds_of`), so the model
file carries its operating points wherever it goes. Predictions carry no patient identifiers
unless asked (``with_patient``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_curve

from cxr_tf import atomic
from cxr_tf.findings import IGNORE, metric_targets
from cxr_tf.metrics import auroc_per_class
from cxr_tf.progress import progress
from cxr_tf.rundir import THRESHOLDS, RunDir

log = logging.getLogger(__name__)
THRESHOLD_RULE = "max F1 per finding on the validation split"


def predict_split(run_dir, split: str, records=None, model=None):
    """(frame, targets, probabilities, findings) for one split of the run's records; targets are
    the certain labels (uncertain entries left out, whatever the training policy)."""
    from cxr_tf.models import findings_of, input_size_of
    from cxr_tf.pipeline import make_dataset

    run = RunDir(run_dir)
    rec = run.records(records)
    model = model or run.load_model()
    findings = findings_of(model)
    ds = make_dataset(rec.path, split, training=False, batch_size=run.config["batch_size"],
                      image_size=input_size_of(model), findings=findings).map(lambda x, y: x)
    probs = model.predict(ds, verbose=0)
    frame = rec.split_frame(split)
    targets = metric_targets(frame[findings].to_numpy(np.float32), run.config["blank"])
    return frame, targets, probs, findings


def max_f1_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the probability threshold that maximizes F1 (sklearn's PR curve); 0.5 where a
    class has no positives."""
    out = np.full(targets.shape[1], 0.5)
    for j in range(targets.shape[1]):
        keep = targets[:, j] != IGNORE
        y, p = targets[keep, j], probs[keep, j]
        if y.sum() == 0 or y.sum() == len(y):
            continue
        prec, rec, thr = precision_recall_curve(y, p)
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
        out[j] = float(thr[int(np.argmax(f1))])
    return out


def bootstrap_auroc(targets, probs, n_boot: int = 1000, seed: int = 0):
    """Per-class and mean AUROC 95% CIs from ``n_boot`` image-level resamples (percentile method).
    Returns (low, high) arrays per class and (low, high) for the mean."""
    rng = np.random.default_rng(seed)
    n, k = targets.shape
    samples = np.full((n_boot, k), np.nan)
    for b in progress(range(n_boot), desc="bootstrap", unit="resample"):
        idx = rng.integers(0, n, n)
        samples[b] = auroc_per_class(targets[idx], probs[idx])
    with np.errstate(all="ignore"):
        low, high = np.nanpercentile(samples, 2.5, axis=0), np.nanpercentile(samples, 97.5, axis=0)
        means = np.nanmean(samples, axis=1)
    return low, high, (float(np.nanpercentile(means, 2.5)), float(np.nanpercentile(means, 97.5)))


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Confusion counts, accuracy, precision, recall and F1 at a threshold (ignored entries dropped)."""
    keep = y != IGNORE
    y, pred = y[keep].astype(int), (p[keep] >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "accuracy": (tp + tn) / max(len(y), 1), "precision": precision,
            "recall": recall, "f1": f1, "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def evaluate(run_dir, split: str = "test", records=None, n_boot: int = 1000, seed: int = 0,
             with_patient: bool = False, figures: bool = True, model=None) -> dict:
    """Evaluate a run on a split; write the files listed in the module doc and return metrics.
    ``model``: the run's model already in memory (default: load ``model.keras``)."""
    from cxr_tf.models import save_model, set_thresholds

    rd = RunDir(run_dir)
    run = rd.path
    model = model or rd.load_model()
    frame, y, p, findings = predict_split(run, split, records, model)
    if split == "val":
        yv, pv = y, p
    else:
        _, yv, pv, _ = predict_split(run, "val", records, model)
    thresholds = max_f1_thresholds(yv, pv)
    chosen = dict(zip(findings, thresholds.tolist()))
    own = records is None or Path(records).resolve() == Path(rd.config["records"]).resolve()
    if own:   # the run's operating points: into thresholds.json and the model file itself
        atomic.write_json(run / THRESHOLDS, {"chosen_on": "val", "rule": THRESHOLD_RULE, "thresholds": chosen})
        set_thresholds(model, chosen, THRESHOLD_RULE)
        save_model(model, rd.model_path)
    auc = auroc_per_class(y, p)
    low, high, mean_ci = bootstrap_auroc(y, p, n_boot, seed)
    train_prev = rd.train_prevalence(findings)
    rows = []
    for j, f in enumerate(findings):
        m = threshold_metrics(y[:, j], p[:, j], thresholds[j])
        majority = 1.0 if train_prev.get(f, 0.0) > 0.5 else 0.0
        base = threshold_metrics(y[:, j], np.full(len(y), majority), 0.5)
        labelled = y[:, j] != IGNORE
        rows.append({"finding": f, "auroc": auc[j], "auroc_ci_low": low[j], "auroc_ci_high": high[j],
                     "positives": int((y[labelled, j] == 1).sum()), "n": int(labelled.sum()),
                     **m, "baseline_auroc": 0.5, "baseline_accuracy": base["accuracy"],
                     "baseline_precision": base["precision"], "baseline_recall": base["recall"],
                     "baseline_f1": base["f1"]})
    table = pd.DataFrame(rows)
    mean_row = {"finding": "mean", "auroc": float(np.nanmean(auc)), "auroc_ci_low": mean_ci[0],
                "auroc_ci_high": mean_ci[1], "positives": int(table["positives"].sum()), "n": len(y)}
    for col in ("accuracy", "precision", "recall", "f1", "baseline_auroc", "baseline_accuracy",
                "baseline_precision", "baseline_recall", "baseline_f1"):
        mean_row[col] = float(table[col].mean())
    table = pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)
    atomic.write_csv(run / "metrics.csv", table)
    preds = frame[["image_id", "split"] + (["patient"] if with_patient else [])].copy()
    for j, f in enumerate(findings):
        preds[f"label_{f}"], preds[f"prob_{f}"] = y[:, j], p[:, j]
        preds[f"pred_{f}"] = (p[:, j] >= thresholds[j]).astype(int)
    atomic.write_csv(run / f"predictions_{split}.csv", preds)
    metrics = {"split": split, "images": len(y), "findings": findings,
               "mean_auroc": mean_row["auroc"], "mean_auroc_ci95": list(mean_ci),
               "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile, image-level"},
               "per_class": table.to_dict(orient="records"),
               "thresholds": dict(zip(findings, thresholds.tolist())),
               "baseline": "most frequent training class per finding (constant prediction)"}
    atomic.write_json(run / "metrics.json", metrics)
    if figures:
        from cxr_tf import plots
        plots.roc_grid(y, p, findings, auc, run / "roc_curves.png")
        plots.pr_grid(y, p, findings, run / "pr_curves.png")
        plots.confusion_grid(table.iloc[:-1], run / "confusion_matrices.png")
    log.info("%s %s: mean AUROC %.4f (95%% CI %.4f-%.4f)", run, split, mean_row["auroc"], *mean_ci)
    return metrics
