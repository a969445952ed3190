"""``cxr-tf label`` measured: accuracy on real reports with expert labels, and speed, each beside a
simple baseline run in the same process on the same reports.

One command: ``python benchmarks/label.py [--openi ../shared/data/reports/openi_dev] [--n 20000]``.

* **OpenI (real)** with ``--openi DIR``: the 1,920 OpenI development reports (``reports.csv``, the
  CheXpert labeler's headerless one-column CSV) against the expert gold labels (``gold.csv``).
  cxr-tf runs exactly as a user runs it: ``cxr-tf label reports.csv --out out.csv --vocabulary
  chestxray14``, defaults otherwise, and the written CSV is scored. The estimate is a **fixed
  split**: fold = CRC32(file name) mod 5; the rules were written while reading folds 0-3 only;
  fold 4 (354 reports) was not read and gives the held-out figure. Printed: per-finding precision,
  recall, F1 and confusion counts; micro-F1 over the 13 findings the gold set has positives for and
  over the 8 ChestX-ray8 findings; the ``chexpert`` vocabulary's positives on the 7 findings both
  vocabularies share; reports/s on one core.
* **Baseline**: a keyword matcher with a pre-negation list (one expression per finding; negative when
  a negation word comes before it in the sentence): what a first script does.
* **Phantoms**: 20,000 phantom MIMIC-CXR reports (our own templates): reports/s on one core and on
  all cores against the speed goal of 2,000/s, and agreement with the phantoms' truth.
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

# --- the baselines --------------------------------------------------------------------------------
NIH_KEYWORDS = {
    "Atelectasis": r"atelecta", "Cardiomegaly": r"cardiomegaly|enlarged heart|heart is enlarged",
    "Effusion": r"effusion", "Infiltration": r"infiltrat", "Mass": r"\bmass\b", "Nodule": r"nodul",
    "Pneumonia": r"pneumonia", "Pneumothorax": r"pneumothorax", "Consolidation": r"consolidat",
    "Edema": r"edema", "Emphysema": r"emphysem", "Fibrosis": r"fibros", "Pleural_Thickening": r"pleural thicken",
    "Hernia": r"hernia",
}
CHEXPERT_KEYWORDS = {
    "Enlarged Cardiomediastinum": r"mediastin", "Cardiomegaly": r"cardiomegaly|heart is .*enlarged",
    "Lung Lesion": r"nodul|mass\b|lesion", "Lung Opacity": r"opacit", "Edema": r"edema|congestion",
    "Consolidation": r"consolidat", "Pneumonia": r"pneumonia", "Atelectasis": r"atelecta",
    "Pneumothorax": r"pneumothorax", "Pleural Effusion": r"effusion", "Pleural Other": r"pleural (?:thick|abnorm)",
    "Fracture": r"fractur", "Support Devices": r"catheter|tube|line",
}
_NEGATION = re.compile(r"\b(?:no|not|without|negative for|free of|clear of|absence of)\b")


def keyword_negation(texts, keywords=NIH_KEYWORDS) -> pd.DataFrame:
    """Baseline: per sentence, a keyword is positive unless a negation word comes before it."""
    pats = {k: re.compile(v) for k, v in keywords.items()}
    rows = []
    for text in texts:
        row = {k: 0.0 for k in keywords}
        for sentence in re.split(r"[.\n]", str(text).lower()):
            for name, pat in pats.items():
                m = pat.search(sentence)
                if m and not _NEGATION.search(sentence, 0, m.start()):
                    row[name] = 1.0
        rows.append(row)
    return pd.DataFrame(rows, columns=list(keywords), dtype=float)


def keyword_impression(texts) -> pd.DataFrame:
    """Baseline of the phantom benchmark: keyword search in the impression, positive when present."""
    pats = {k: re.compile(v) for k, v in CHEXPERT_KEYWORDS.items()}
    rows = [{k: 1.0 for k, p in pats.items() if p.search(t.lower().split("impression:", 1)[-1])} for t in texts]
    return pd.DataFrame(rows, columns=list(CHEXPERT_KEYWORDS), dtype=float)


def _rate(fn, n: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


# --- OpenI: real reports, expert labels ------------------------------------------------------------
def openi(folder, rounds: int = 3) -> dict:
    """Score cxr-tf (as the CLI runs it) and the baseline on the OpenI development reports."""
    from cxr_tf.label import label_file, label_reports
    from cxr_tf.label.io import read_reports
    from cxr_tf.label.score import (CHESTXRAY8, GOLD13, HELD_OUT_FOLD, NIH14, SHARED_CHEXPERT, fold, read_gold,
                                    score)

    folder = Path(folder)
    gold = read_gold(folder / "gold.csv")
    _, texts, _ = read_reports(folder / "reports.csv")
    if len(texts) != len(gold):
        raise SystemExit(f"{folder}: {len(texts)} reports against {len(gold)} gold rows")
    with tempfile.TemporaryDirectory() as tmp:
        label_file(folder / "reports.csv", Path(tmp) / "out.csv", vocab="chestxray14", uncertain="negative")
        ours = pd.read_csv(Path(tmp) / "out.csv")
    base = keyword_negation(texts)
    folds = np.array([fold(f) for f in gold["filename"]])
    parts = {"held-out fold": folds == HELD_OUT_FOLD, "development folds": folds != HELD_OUT_FOLD,
             "all": np.ones(len(gold), bool)}
    res = {"reports": len(texts), **{f"reports_{k}": int(m.sum()) for k, m in parts.items()}}
    print(f"\nOpenI development set: {len(texts)} real reports with expert labels ({folder})")
    print("fixed split: fold = CRC32(filename) mod 5; rules written on folds 0-3; fold 4 held out "
          f"({res['reports_held-out fold']} reports)\n")
    print(f"{'micro-F1':30s} {'cxr-tf':>8s} {'baseline':>9s}   (precision / recall of cxr-tf)")
    for part, m in parts.items():
        g = gold[m].reset_index(drop=True)
        for label, findings in (("13 findings", GOLD13), ("8 ChestX-ray8 findings", CHESTXRAY8),
                                ("14 findings (Hernia: no gold +)", NIH14)):
            _, s = score(ours[m].reset_index(drop=True), g, findings)
            _, b = score(base[m].reset_index(drop=True), g, findings)
            key = f"{part}, {label}"
            res[f"cxr_tf_{key}"], res[f"baseline_{key}"] = s["micro_f1"], b["micro_f1"]
            print(f"{key:52s} {s['micro_f1']:.3f}  {b['micro_f1']:.3f}   "
                  f"({s['micro_precision']:.3f} / {s['micro_recall']:.3f})")
    for part in ("held-out fold", "all"):
        m = parts[part]
        table, _ = score(ours[m].reset_index(drop=True), gold[m].reset_index(drop=True), NIH14)
        btable, _ = score(base[m].reset_index(drop=True), gold[m].reset_index(drop=True), NIH14)
        table["baseline_f1"] = btable["f1"]
        print(f"\nper finding, {part} (cxr-tf; confusion counts tp fp fn tn; baseline F1 beside):")
        print(table.to_string(float_format=lambda x: f"{x:.3f}"))
    print("\nchexpert vocabulary, positives on the 7 shared findings (its own conventions, so not the gold's):")
    for sections in ("impression", "findings,impression"):
        cx = label_reports(texts, "chexpert", sections=sections)
        for part in ("held-out fold", "all"):
            m = parts[part]
            _, s = score(cx[m].reset_index(drop=True), gold[m].reset_index(drop=True), list(SHARED_CHEXPERT),
                         SHARED_CHEXPERT)
            res[f"chexpert_{sections}_{part}"] = s["micro_f1"]
            print(f"  sections {sections:20s} {part:14s} micro-F1 {s['micro_f1']:.3f} "
                  f"(precision {s['micro_precision']:.3f}, recall {s['micro_recall']:.3f})")
    rate = _rate(lambda: label_reports(texts, "chestxray14", uncertain="negative"), len(texts), rounds)
    brate = _rate(lambda: keyword_negation(texts), len(texts), rounds)
    res.update(openi_cxr_tf_reports_per_s=rate, openi_baseline_reports_per_s=brate)
    print(f"\nthroughput on these reports, one core: cxr-tf {rate:,.0f} reports/s ({rate / 2000:.2f}x the 2,000 "
          f"goal), baseline {brate:,.0f} reports/s")
    return res


# --- phantoms: speed ----------------------------------------------------------------------------------
def _phantom_reports(n: int, seed: int = 0):
    """n phantom reports and their true labels (the CheXpert states the phantom writer assigns)."""
    from dataclasses import replace

    from cxr_tf.core import cards
    from cxr_tf.datasets.chexpert import phantom as cx
    from cxr_tf.datasets.mimic.phantom import plan, study_report

    order = cards.dataset_card("mimic")["findings"]
    plans = plan(int(n * 1.6), max(3, n // 3), seed)[:n]
    texts = [study_report(sp, seed) for sp in plans]
    truth = pd.DataFrame([cx.label_cells(replace(sp.study, part="train"), order) for sp in plans], columns=order)
    return texts, truth.replace("", np.nan).astype(float)


def agreement(pred: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Exact agreement of the four states over the observations both name."""
    cols = [c for c in truth.columns if c in pred.columns and c != "No Finding"]
    return float((pred[cols].fillna(9).to_numpy() == truth[cols].fillna(9).to_numpy()).mean())


def phantoms(n: int, rounds: int) -> dict:
    """Reports/s of cxr-tf (one core, all cores) and of the baseline on phantom reports."""
    from cxr_tf.label import label_file, label_reports

    texts, truth = _phantom_reports(n)
    words = [len(t.split()) for t in texts]
    tmp = Path(tempfile.mkdtemp())
    pd.DataFrame({"report": texts}).to_csv(tmp / "reports.csv", index=False)
    cores = os.cpu_count() or 1
    times = {"baseline": [], "cxr_tf_1": [], f"cxr_tf_{cores}": []}
    for _ in range(rounds):                       # interleaved, so load drifts hit all three alike
        t = time.perf_counter()
        base = keyword_impression(texts)
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
    print("\nphantom MIMIC-CXR reports (our templates: the agreement checks the chain, not real accuracy)")
    for k, v in res.items():
        print(f"{k:34s} {v}" if not isinstance(v, float) else f"{k:34s} {v:.3f}")
    return res


def main(argv=None) -> dict:
    """Run the benchmarks asked for and print the figures with their baselines."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openi", type=Path, help="OpenI development folder (reports.csv, gold.csv)")
    ap.add_argument("--n", type=int, default=20000, help="phantom reports (0: skip the phantom benchmark)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    res = {}
    if args.openi:
        res["openi"] = openi(args.openi, args.rounds)
    if args.n:
        res["phantoms"] = phantoms(args.n, args.rounds)
    return res


if __name__ == "__main__":
    main()
