"""``cxr-tf predict``: probabilities per finding for PNG, JPEG and DICOM files, and the binary call
at the thresholds stored with the run (``thresholds.json``, chosen on validation by evaluate).

Images get the same preprocessing as training: decode by content, resize to the records' stored
size with the records' aspect handling, then the pipeline's resize and normalization."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf import atomic
from cxr_tf.errors import CxrError, CxrImageError
from cxr_tf.imaging import decode_file, fit
from cxr_tf.progress import progress

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")


def collect_images(inputs) -> list[Path]:
    """Files given directly, plus image files found recursively in given directories (sorted)."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            out.append(item)
        else:
            raise CxrError(f"{item}: no such file or directory")
    return out


def run_settings(model_path) -> dict:
    """Preprocessing settings and thresholds from the run directory holding the model."""
    run = Path(model_path).resolve().parent
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    prep = {}
    if (run / "split_summary.json").is_file():
        prep = json.loads((run / "split_summary.json").read_text()).get("prepare_config", {})
    thresholds = None
    if (run / "thresholds.json").is_file():
        thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    return {"normalization": cfg.get("normalization"), "stored_size": prep.get("size"),
            "aspect": prep.get("aspect", "pad"), "thresholds": thresholds}


def predict_images(model_path, inputs, *, batch_size: int = 16, skip_bad: bool = False,
                   out_csv=None) -> tuple[pd.DataFrame, list]:
    """Predict every image; returns (table, skipped) where skipped lists (file, reason).

    An unreadable image raises :class:`CxrImageError` naming it, unless ``skip_bad``."""
    import tensorflow as tf

    from cxr_tf.models import findings_of, load_model, normalization_of
    from cxr_tf.pipeline import preprocess_batch

    model = load_model(model_path)
    findings = findings_of(model)
    settings = run_settings(model_path)
    size = int(model.input_shape[1])
    stored = int(settings["stored_size"] or size)
    normalization = settings["normalization"] or normalization_of(model)
    files = collect_images(inputs)
    if not files:
        raise CxrError("no image files found in the given paths")
    rows, skipped, batch, names = [], [], [], []

    def flush():
        x = preprocess_batch(tf.constant(np.stack(batch)[..., None]), size, normalization=normalization)
        probs = model.predict_on_batch(x)
        rows.extend(zip(names, np.asarray(probs)))
        batch.clear()
        names.clear()

    for path in progress(files, desc="predict", unit="img"):
        try:
            pixels = decode_file(path)
        except CxrImageError as exc:
            if not skip_bad:
                raise
            skipped.append((str(path), exc.problem))
            continue
        batch.append(fit(pixels, stored, settings["aspect"])[0])
        names.append(str(path))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    table = pd.DataFrame([{"file": n, **{f"prob_{f}": float(p[j]) for j, f in enumerate(findings)}}
                          for n, p in rows])
    if settings["thresholds"]:
        for f in findings:
            table[f"call_{f}"] = (table[f"prob_{f}"] >= settings["thresholds"][f]).astype(int)
    if out_csv:
        atomic.write_csv(out_csv, table)
    return table, skipped
