"""``cxr-tf label``: weak labels from free-text radiology reports (no TensorFlow here).

:func:`label_reports` labels texts with a vocabulary (``chexpert``: the CheXpert labeler's 14
observations and conventions; ``chestxray14``: the 14 NIH findings and No Finding, in the NIH /
OpenI gold standard's conventions); :mod:`cxr_tf.label.io` reads the inputs people have (the
CheXpert labeler's headerless CSV, a CSV column, a folder of ``.txt`` reports, the MIMIC-CXR
reports zip or tree) and writes the output. The phrases and context rules are data
(``chexpert.toml``, ``chestxray14.toml``, ``rules.toml``). With ``explain`` every decided mention is
recorded (sentence, matched phrase, trigger, rule), so a user can see why a report got a label.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cxr_tf.label.engine import (NEGATIVE, POSITIVE, STATE_NAMES, UNCERTAIN, VOCABULARIES, label_text, rules,
                                 vocabulary)
from cxr_tf.label.sections import CHOICES as SECTIONS, select

__all__ = ["label_reports", "label_one", "label_file", "VOCABULARIES", "SECTIONS", "UNCERTAIN_AS", "LABELER"]
UNCERTAIN_AS = ("negative", "positive", "uncertain")
LABELER = "cxr-tf rule labeler 2"


def default_sections(vocab: str) -> str:
    """The sections a vocabulary labels by default (its ``[conventions] sections``)."""
    return vocabulary(vocab).sections


def label_one(text: str, vocab: str = "chexpert", sections: str | None = None, trace: list | None = None) -> dict:
    """One report -> {observation: 1.0 / 0.0 / -1.0} (unmentioned observations absent). ``sections``
    defaults to the vocabulary's (``impression`` for chexpert, ``findings,impression`` for
    chestxray14); ``trace`` collects the audit trail (:func:`cxr_tf.label.engine.label_text`)."""
    v = vocabulary(vocab)
    return label_text(select(text, sections or v.sections), v, rules(), trace)


def label_reports(texts, vocab: str = "chexpert", sections: str | None = None,
                  uncertain: str = "uncertain", explain: list | None = None) -> pd.DataFrame:
    """Reports -> one row each, one float column per observation in the vocabulary's order.

    ``chexpert``: 1.0, 0.0, -1.0, blank (NaN) for unmentioned. ``chestxray14``: NIH style, 1.0
    positive and 0.0 otherwise, uncertain mentions as ``uncertain`` says (negative: 0, as the NIH
    text mining dropped uncertain mentions; positive: 1; uncertain: -1); a ``Finding Labels``
    column joins the positives with ``|`` (``No Finding`` when none). ``sections`` defaults to the
    vocabulary's. With ``explain`` (a list), one record per report is appended: its row, its labels
    as written, and every decided mention (see :func:`cxr_tf.label.engine.label_text`)."""
    v, r = vocabulary(vocab), rules()
    sections = sections or v.sections
    if uncertain not in UNCERTAIN_AS:
        from cxr_tf.core.errors import CxrConfigError
        raise CxrConfigError(f"unknown uncertain {uncertain!r}", key="uncertain", choices=UNCERTAIN_AS)
    rows, traces = [], []
    for t in texts:
        trace = [] if explain is not None else None
        rows.append(label_text(select(t if isinstance(t, str) else "", sections), v, r, trace))
        traces.append(trace)
    frame = pd.DataFrame(rows, columns=v.order, dtype=np.float32)
    if vocab == "chestxray14":
        value = {"negative": NEGATIVE, "positive": POSITIVE, "uncertain": UNCERTAIN}[uncertain]
        findings = [f for f in v.order if f != v.no_finding]
        frame[findings] = frame[findings].replace(UNCERTAIN, value).fillna(0.0)
        positive = frame[findings] == POSITIVE
        frame[v.no_finding] = (~positive.any(axis=1) & ~(frame[findings] == UNCERTAIN).any(axis=1)).astype(np.float32)
        frame["Finding Labels"] = ["|".join(f for f, p in zip(findings, row) if p) or v.no_finding
                                   for row in positive.to_numpy()]
    if explain is not None:
        for i, trace in enumerate(traces):
            labels = {k: (None if pd.isna(x) else (x if isinstance(x, str) else float(x)))
                      for k, x in frame.iloc[i].items()}
            explain.append({"row": i, "labels": labels, "decided_by": _decided_by(rows[i], trace), "mentions": trace})
    return frame


def _decided_by(found: dict, trace: list) -> dict:
    """For each observation the report states, the index (in ``trace``) of the first mention whose
    state is the report's; No Finding is derived from the others, so it has none."""
    out = {}
    for name, state in found.items():
        wanted = STATE_NAMES[state]
        out[name] = next((j for j, e in enumerate(trace) if e["finding"] == name and e["state"] == wanted), None)
    return out


def _chunk(args):
    texts, vocab, sections, uncertain, start, explain = args
    records = [] if explain else None
    frame = label_reports(texts, vocab, sections, uncertain, records)
    for rec in records or ():
        rec["row"] += start
    return frame, records


def label_file(input_path, out_csv, *, vocab: str = "chexpert", sections: str | None = None,
               column: str | None = None, uncertain: str = "uncertain", workers: int | None = 1,
               chunk: int = 2000, explain=None) -> dict:
    """Label every report of an input (see :mod:`cxr_tf.label.io`) into ``out_csv``; returns
    counts. ``workers`` processes share the reports in chunks, in order. ``explain`` (a path)
    writes the audit trail as JSON lines, one report per line, with the input's key columns."""
    from cxr_tf.core import atomic
    from cxr_tf.label.io import read_reports, write_labels
    from cxr_tf.core.parallel import imap
    from cxr_tf.core.progress import progress

    sections = sections or default_sections(vocab)
    select("", sections)
    keys, texts, kind = read_reports(input_path, column)
    tasks = [(texts[i: i + chunk], vocab, sections, uncertain, i, explain is not None)
             for i in range(0, len(texts), chunk)]
    parts, records = [], []
    with progress(total=len(texts), desc=f"label ({vocab})", unit="report") as bar:
        for part, recs in imap(_chunk, tasks, workers):
            parts.append(part)
            records.extend(recs or ())
            bar.update(len(part))
    labels = pd.concat(parts, ignore_index=True) if parts else label_reports([], vocab)
    keep_text = kind.startswith("report CSV")
    out = write_labels(out_csv, keys, texts, labels, kind, f"{LABELER} ({vocab}, sections={sections})", keep_text)
    if explain is not None:
        key_rows = keys.reset_index(drop=True).to_dict("records")
        lines = [json.dumps({"row": rec["row"], **{k: str(x) for k, x in key_rows[rec["row"]].items()},
                             **{k: v for k, v in rec.items() if k != "row"}}) for rec in records]
        atomic.write_text(explain, "".join(line + "\n" for line in lines))
    observed = [c for c in labels.columns if c != "Finding Labels"]
    return {"reports": len(texts), "input": kind, "out": str(out_csv), "sections": sections,
            "explain": None if explain is None else str(explain),
            "positive": int((out[observed] == POSITIVE).to_numpy().sum()),
            "uncertain": int((out[observed] == UNCERTAIN).to_numpy().sum()),
            "negative": int((out[observed] == NEGATIVE).to_numpy().sum())}
