"""``cxr-tf label``: weak labels from free-text radiology reports (no TensorFlow here).

:func:`label_reports` labels texts with a vocabulary (``chexpert``: the CheXpert labeler's 14
observations and conventions; ``chestxray14``: the 14 NIH findings and No Finding);
:mod:`cxr_tf.label.io` reads the inputs people have (the CheXpert labeler's headerless CSV, a CSV
column, a folder of ``.txt`` reports, the MIMIC-CXR reports zip or tree) and writes the output.
The phrases and context rules are data (``chexpert.toml``, ``chestxray14.toml``, ``rules.toml``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_tf.label.engine import NEGATIVE, POSITIVE, UNCERTAIN, VOCABULARIES, label_text, rules, vocabulary
from cxr_tf.label.sections import CHOICES as SECTIONS, select

__all__ = ["label_reports", "label_one", "VOCABULARIES", "SECTIONS", "UNCERTAIN_AS", "LABELER"]
UNCERTAIN_AS = ("negative", "positive", "uncertain")
LABELER = "cxr-tf rule labeler 1"


def label_one(text: str, vocab: str = "chexpert", sections: str = "impression") -> dict:
    """One report -> {observation: 1.0 / 0.0 / -1.0} (unmentioned observations absent)."""
    return label_text(select(text, sections), vocabulary(vocab), rules())


def label_reports(texts, vocab: str = "chexpert", sections: str = "impression",
                  uncertain: str = "uncertain") -> pd.DataFrame:
    """Reports -> one row each, one float column per observation in the vocabulary's order.

    ``chexpert``: 1.0, 0.0, -1.0, blank (NaN) for unmentioned. ``chestxray14``: NIH style, 1.0
    positive and 0.0 otherwise, uncertain mentions as ``uncertain`` says (negative: 0, as the NIH
    text mining dropped uncertain mentions; positive: 1; uncertain: -1); a ``Finding Labels``
    column joins the positives with ``|`` (``No Finding`` when none)."""
    v, r = vocabulary(vocab), rules()
    if uncertain not in UNCERTAIN_AS:
        from cxr_tf.errors import CxrConfigError
        raise CxrConfigError(f"unknown uncertain {uncertain!r}", key="uncertain", choices=UNCERTAIN_AS)
    rows = [label_text(select(t if isinstance(t, str) else "", sections), v, r) for t in texts]
    frame = pd.DataFrame(rows, columns=v.order, dtype=np.float32)
    if vocab == "chestxray14":
        value = {"negative": NEGATIVE, "positive": POSITIVE, "uncertain": UNCERTAIN}[uncertain]
        findings = [f for f in v.order if f != v.no_finding]
        frame[findings] = frame[findings].replace(UNCERTAIN, value).fillna(0.0)
        positive = frame[findings] == POSITIVE
        frame[v.no_finding] = (~positive.any(axis=1) & ~(frame[findings] == UNCERTAIN).any(axis=1)).astype(np.float32)
        frame["Finding Labels"] = ["|".join(f for f, p in zip(findings, row) if p) or v.no_finding
                                   for row in positive.to_numpy()]
    return frame


def _chunk(args) -> pd.DataFrame:
    texts, vocab, sections, uncertain = args
    return label_reports(texts, vocab, sections, uncertain)


def label_file(input_path, out_csv, *, vocab: str = "chexpert", sections: str = "impression",
               column: str | None = None, uncertain: str = "uncertain", workers: int | None = 1,
               chunk: int = 2000) -> dict:
    """Label every report of an input (see :mod:`cxr_tf.label.io`) into ``out_csv``; returns
    counts. ``workers`` processes share the reports in chunks, in order."""
    from cxr_tf.label.io import read_reports, write_labels
    from cxr_tf.parallel import imap
    from cxr_tf.progress import progress

    vocabulary(vocab)
    select("", sections)
    keys, texts, kind = read_reports(input_path, column)
    tasks = [(texts[i: i + chunk], vocab, sections, uncertain) for i in range(0, len(texts), chunk)]
    parts = []
    with progress(total=len(texts), desc=f"label ({vocab})", unit="report") as bar:
        for part in imap(_chunk, tasks, workers):
            parts.append(part)
            bar.update(len(part))
    labels = pd.concat(parts, ignore_index=True) if parts else label_reports([], vocab)
    keep_text = kind.startswith("report CSV")
    out = write_labels(out_csv, keys, texts, labels, kind, f"{LABELER} ({vocab}, sections={sections})", keep_text)
    observed = [c for c in labels.columns if c != "Finding Labels"]
    return {"reports": len(texts), "input": kind, "out": str(out_csv),
            "positive": int((out[observed] == POSITIVE).to_numpy().sum()),
            "uncertain": int((out[observed] == UNCERTAIN).to_numpy().sum()),
            "negative": int((out[observed] == NEGATIVE).to_numpy().sum())}
