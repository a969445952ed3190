"""``cxr-tf evaluate``: predictions per image, metrics with bootstrap CIs, thresholds chosen on the
validation split by a rule (:mod:`cxr_tf.evaluation.thresholds`: max-F1 by default, Youden's J, a
fixed sensitivity or specificity, calibrated), a naive baseline beside the model, and figures.

Writes into the run directory: ``predictions_<split>.csv``, ``metrics.json``, ``metrics.csv``,
``roc_curves.png``, ``pr_curves.png`` and ``confusion_matrices.png``; on the run's own records the
chosen thresholds are saved by :func:`cxr_tf.evaluation.thresholds.save_thresholds` (``thresholds.json``
and inside ``model.keras``, :func:`cxr_tf.models.thresholds_of`), so the model file carries its
operating points wherever it goes. A calibrated rule also writes the calibrated probabilities
(``cal_<finding>``, each threshold at 0.5). Predictions carry no patient identifiers
unless asked (``with_patient``).

On other records (``records=``), the same files go to ``RUN/evaluate_<records folder>/`` and the
run's own results are left alone. When those records are another dataset's, the model is scored
on the findings the vocabularies share (:mod:`cxr_tf.vocab.crosswalk`: Effusion answers Pleural
Effusion, ...), at the thresholds the model carries; ``metrics.json`` lists what was mapped, how,
and what was left out, and says which labels the split carries (NLP-mined or radiologist).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from cxr_tf.core import atomic
from cxr_tf.vocab import crosswalk
from cxr_tf.vocab.findings import IGNORE, metric_targets
from cxr_tf.evaluation.metrics import auroc_per_class
from cxr_tf.core.progress import progress
from cxr_tf.evaluation.thresholds import ThresholdRule, calibrate, parse_rule, save_thresholds
from cxr_tf.models.rundir import RunDir

log = logging.getLogger(__name__)


def predict_split(run_dir, split: str, records=None, model=None, pairs=None):
    """(frame, targets, probabilities, findings) for one split of the run's records (or
    ``records``); targets are the certain labels (uncertain entries left out, whatever the training
    policy). With ``pairs`` (:func:`cxr_tf.vocab.crosswalk.pairs`), the records' findings they name,
    each answered by its paired model output."""
    from cxr_tf.models import findings_of, input_size_of
    from cxr_tf.pipeline import make_dataset, shard_errors

    run = RunDir(run_dir)
    rec = run.records(records)
    model = model or run.load_model()
    outputs = findings_of(model)
    findings = [q.finding for q in pairs] if pairs else outputs
    ds = make_dataset(rec.path, split, training=False, batch_size=run.config["batch_size"],
                      image_size=input_size_of(model), findings=findings).map(lambda x, y: x)
    with shard_errors(rec.path, (split,)):
        probs = model.predict(ds, verbose=0)
    if pairs:
        probs = probs[:, [outputs.index(q.output) for q in pairs]]
    frame = rec.split_frame(split)
    targets = metric_targets(frame[findings].to_numpy(np.float32), run.config["blank"])
    # a finding the split does not label at all (e.g. the NIH findings Google did not relabel) is not scored
    targets[:, frame[findings].isna().all().to_numpy()] = IGNORE
    return frame, targets, probs, findings


def bootstrap_auroc(targets, probs, n_boot: int = 1000, seed: int = 0):
    """Per-class and mean AUROC 95% CIs from ``n_boot`` image-level resamples (percentile method).
    Returns (low, high) arrays per class and (low, high) for the mean."""
    rng = np.random.default_rng(seed)
    n, k = targets.shape
    samples = np.full((n_boot, k), np.nan)
    for b in progress(range(n_boot), desc="bootstrap", unit="resample"):
        idx = rng.integers(0, n, n)
        samples[b] = auroc_per_class(targets[idx], probs[idx])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # a finding with no AUROC in any resample
        low, high = np.nanpercentile(samples, 2.5, axis=0), np.nanpercentile(samples, 97.5, axis=0)
        means = np.nanmean(samples, axis=1)
    return low, high, (float(np.nanpercentile(means, 2.5)), float(np.nanpercentile(means, 97.5)))


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Confusion counts, accuracy, precision, recall and F1 at a threshold (ignored entries dropped)."""
    keep = y != IGNORE
    y, pred = y[keep].astype(int), (p[keep] >= threshold).astype(int)
    if not len(y):              # the split does not label this finding: nothing to score
        nan = float("nan")
        return {"threshold": float(threshold), "accuracy": nan, "precision": nan, "recall": nan, "f1": nan,
                "tp": 0, "fp": 0, "tn": 0, "fn": 0}
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "accuracy": (tp + tn) / max(len(y), 1), "precision": precision,
            "recall": recall, "f1": f1, "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def _thresholds(rd, model, own: bool, split, y, p, records, pairs, rule: ThresholdRule) -> tuple[np.ndarray, str]:
    """Operating thresholds and how they were chosen: on the run's own records, ``rule`` on val
    (saved into the run and its model); on other records, the ones the model carries, else
    ``rule`` on their val split."""
    from cxr_tf.models import findings_of, thresholds_of

    outputs = [q.output for q in pairs] if pairs else findings_of(model)
    stored = thresholds_of(model)
    if not own and stored:
        return np.array([stored[o] for o in outputs]), "the model's own (chosen on its validation split)"
    if split == "val":
        yv, pv = y, p
    elif "val" in rd.records(records).splits:
        _, yv, pv, _ = predict_split(rd.path, "val", records, model, pairs)
    else:
        return np.full(y.shape[1], 0.5), "0.5 (the model carries no thresholds and the records have no val split)"
    thresholds = rule.choose(yv, pv)
    if not own:
        return thresholds, f"{rule.describe()} of the other records (the model carries none)"
    save_thresholds(rd.path, model, dict(zip(outputs, thresholds.tolist())), rule, model_path=rd.model_path)
    return thresholds, rule.describe()


def _label_kinds(frame: pd.DataFrame) -> dict:
    """Which labels a split carries (from the manifest's label_source / label_method, if any)."""
    return {col: sorted(map(str, frame[col].dropna().unique())) for col in ("label_source", "label_method")
            if col in frame}


def _by_dataset(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, findings, run: Path, split: str) -> dict:
    """On merged records (a ``dataset`` column), AUROC per dataset and finding beside the overall
    figures: ``metrics_by_dataset.csv`` and the returned summary (a finding a dataset does not
    label has no AUROC there)."""
    if "dataset" not in frame or frame["dataset"].nunique() < 2:
        return {}
    rows, out = [], {}
    for name, index in frame.groupby("dataset", sort=True).indices.items():
        auc = auroc_per_class(y[index], p[index])
        for j, f in enumerate(findings):
            labelled = y[index, j] != IGNORE
            rows.append({"dataset": name, "finding": f, "auroc": auc[j], "n": int(labelled.sum()),
                         "positives": int((y[index, j][labelled] == 1).sum())})
        scored = {f: float(a) for f, a in zip(findings, auc) if not np.isnan(a)}
        out[name] = {"images": int(len(index)), "mean_auroc": float(np.mean(list(scored.values())))
                     if scored else float("nan"), "auroc": scored}
    atomic.write_csv(run / f"metrics_by_dataset_{split}.csv", pd.DataFrame(rows))
    return out


def evaluate(run_dir, split: str = "test", records=None, n_boot: int = 1000, seed: int = 0,
             with_patient: bool = False, figures: bool = True, model=None, approximate: bool = False,
             threshold_rule: str | ThresholdRule | None = None) -> dict:
    """Evaluate a run on a split; write the files listed in the module doc and return metrics.
    ``model``: the run's model already in memory (default: load ``model.keras``). On another
    dataset's ``records``, ``approximate`` also scores the crosswalk's approximate pairs.
    ``threshold_rule``: how thresholds are chosen (``NAME[:VALUE]``, default max_f1)."""
    from cxr_tf.models import findings_of

    rule = threshold_rule if isinstance(threshold_rule, ThresholdRule) else parse_rule(threshold_rule)
    rd = RunDir(run_dir)
    model = model or rd.load_model()
    own = records is None or Path(records).resolve() == Path(rd.config["records"]).resolve()
    rec = rd.records(records)
    outputs = findings_of(model)
    pairs = None if list(rec.findings) == outputs else crosswalk.require(outputs, rec.findings, approximate)
    run = rd.path if own else rd.path / f"evaluate_{rec.path.name}"
    run.mkdir(parents=True, exist_ok=True)
    frame, y, p, findings = predict_split(rd.path, split, records, model, pairs)
    thresholds, how = _thresholds(rd, model, own, split, y, p, records, pairs, rule)
    auc = auroc_per_class(y, p)
    low, high, mean_ci = bootstrap_auroc(y, p, n_boot, seed)
    train_prev = rd.train_prevalence(outputs)
    answer = {q.finding: q.output for q in pairs} if pairs else {f: f for f in findings}
    rows = []
    for j, f in enumerate(findings):
        m = threshold_metrics(y[:, j], p[:, j], thresholds[j])
        majority = 1.0 if train_prev.get(answer[f], 0.0) > 0.5 else 0.0
        base = threshold_metrics(y[:, j], np.full(len(y), majority), 0.5)
        labelled = y[:, j] != IGNORE
        mapped = {"model_output": answer[f]} if pairs else {}
        rows.append({"finding": f, **mapped, "auroc": auc[j], "auroc_ci_low": low[j], "auroc_ci_high": high[j],
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
    columns = {}
    for j, f in enumerate(findings):
        columns[f"label_{f}"], columns[f"prob_{f}"] = y[:, j], p[:, j]
        columns[f"pred_{f}"] = (p[:, j] >= thresholds[j]).astype(int)
        if rule.calibrates:
            columns[f"cal_{f}"] = calibrate(p[:, j], thresholds[j])
    preds = pd.concat([preds, pd.DataFrame(columns, index=preds.index)], axis=1)
    atomic.write_csv(run / f"predictions_{split}.csv", preds)
    metrics = {"split": split, "images": len(y), "findings": findings, "records": str(rec.path), "out_dir": str(run),
               "records_dataset": rec.dataset, "labels": _label_kinds(frame), "threshold_rule": how,
               "threshold_rule_spec": rule.spec(),
               "mean_auroc": mean_row["auroc"], "mean_auroc_ci95": list(mean_ci),
               "bootstrap": {"resamples": n_boot, "seed": seed, "method": "percentile, image-level"},
               "per_class": table.to_dict(orient="records"),
               "thresholds": dict(zip(findings, thresholds.tolist())),
               "baseline": "most frequent training class per finding (constant prediction)"}
    by_dataset = _by_dataset(frame, y, p, findings, run, split)
    if by_dataset:
        metrics["by_dataset"] = by_dataset
    if pairs:
        metrics["crosswalk"] = {
            "mapped": [{"finding": q.finding, "model_output": q.output, "match": q.match, "concept": q.concept,
                        "note": q.note} for q in pairs],
            "records_findings_not_scored": [f for f in rec.findings if f not in findings],
            "model_outputs_not_used": [o for o in outputs if o not in answer.values()],
            "approximate_included": approximate}
    atomic.write_json(run / "metrics.json", metrics)
    if figures:
        from cxr_tf.evaluation import plots
        plots.roc_grid(y, p, findings, auc, run / "roc_curves.png")
        plots.pr_grid(y, p, findings, run / "pr_curves.png")
        plots.confusion_grid(table.iloc[:-1], run / "confusion_matrices.png")
    log.info("%s %s: mean AUROC %.4f (95%% CI %.4f-%.4f)", run, split, mean_row["auroc"], *mean_ci)
    return metrics
