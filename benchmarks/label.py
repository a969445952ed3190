"""Reports per second of ``cxr-tf label`` against a simple baseline, on realistic reports.

One command: ``python benchmarks/label.py [--n 20000]``. The reports are phantom MIMIC-CXR reports
(:mod:`cxr_tf.synth.reports`: FINAL REPORT, EXAMINATION, INDICATION, TECHNIQUE, COMPARISON,
FINDINGS and IMPRESSION, 60-120 words, negations and hedges), labelled by

* the baseline: one keyword regular expression per observation searched in the impression,
  positive when found (no negation, uncertainty or sections beyond that): what a first script does;
* cxr-tf's labeler, on one core and on all cores (``--workers``).

Each is timed over the same reports (median of interleaved rounds) and scored against the
phantoms' true labels (exact agreement of the four states per observation). The speed goal is
2,000 reports/s on one core.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

KEYWORDS = {
    "Enlarged Cardiomediastinum": r"mediastin", "Cardiomegaly": r"cardiomegaly|heart is .*enlarged",
    "Lung Lesion": r"nodul|mass\b|lesion", "Lung Opacity": r"opacit", "Edema": r"edema|congestion",
    "Consolidation": r"consolidat", "Pneumonia": r"pneumonia", "Atelectasis": r"atelecta",
    "Pneumothorax": r"pneumothorax", "Pleural Effusion": r"effusion", "Pleural Other": r"pleural (?:thick|abnorm)",
    "Fracture": r"fractur", "Support Devices": r"catheter|tube|line",
}


def _reports(n: int, seed: int = 0):
    """n phantom reports and their true labels (the CheXpert states the phantom writer assigns)."""
    from cxr_tf import cards
    from cxr_tf.synth import chexpert as cx
    from cxr_tf.synth.mimic import plan, study_report

    order = cards.dataset_card("mimic")["findings"]
    plans = plan(int(n * 1.6), max(3, n // 3), seed)[:n]
    texts = [study_report(sp, seed) for sp in plans]
    truth = pd.DataFrame([cx.label_cells(replace_train(sp.study), order) for sp in plans], columns=order)
    return texts, truth.replace("", np.nan).astype(float)


def replace_train(st):
    """The labeler-style (train) labels of a study, whatever its split."""
    from dataclasses import replace
    return replace(st, part="train")


def baseline(texts) -> pd.DataFrame:
    """Keyword search in the impression: positive when present, else blank."""
    pats = {k: re.compile(v) for k, v in KEYWORDS.items()}
    rows = []
    for t in texts:
        low = t.lower()
        imp = low.split("impression:", 1)[-1]
        rows.append({k: 1.0 for k, p in pats.items() if p.search(imp)})
    return pd.DataFrame(rows, columns=list(KEYWORDS), dtype=float)


def agreement(pred: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Exact agreement of the four states over the observations both name."""
    cols = [c for c in truth.columns if c in pred.columns and c != "No Finding"]
    return float((pred[cols].fillna(9).to_numpy() == truth[cols].fillna(9).to_numpy()).mean())


def main(argv=None) -> dict:
    """Time and score both labelers and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    from cxr_tf.label import label_file, label_reports

    texts, truth = _reports(args.n)
    words = [len(t.split()) for t in texts]
    tmp = Path(tempfile.mkdtemp())
    pd.DataFrame({"report": texts}).to_csv(tmp / "reports.csv", index=False)
    cores = os.cpu_count() or 1
    times = {"baseline": [], "cxr_tf_1": [], f"cxr_tf_{cores}": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        base = baseline(texts)
        times["baseline"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = label_reports(texts)
        times["cxr_tf_1"].append(time.perf_counter() - t)
        t = time.perf_counter()
        label_file(tmp / "reports.csv", tmp / "out.csv", column="report", workers=cores)
        times[f"cxr_tf_{cores}"].append(time.perf_counter() - t)
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    res = {"reports": len(texts), "words_median": float(np.median(words)),
           "words_p10_p90": np.percentile(words, [10, 90]), **{f"{k}_reports_per_s": v for k, v in rate.items()},
           "cxr_tf_1_vs_goal_2000": rate["cxr_tf_1"] / 2000,
           "cxr_tf_1_vs_baseline_speed": rate["cxr_tf_1"] / rate["baseline"],
           f"cxr_tf_{cores}_vs_1": rate[f"cxr_tf_{cores}"] / rate["cxr_tf_1"],
           "agreement_cxr_tf": agreement(ours, truth), "agreement_baseline": agreement(base, truth)}
    for k, v in res.items():
        print(f"{k:34s} {v}" if not isinstance(v, float) else f"{k:34s} {v:.3f}")
    return res


if __name__ == "__main__":
    main()
