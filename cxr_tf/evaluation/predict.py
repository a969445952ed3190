"""``cxr-tf predict``: probabilities per finding for PNG, JPEG and DICOM files, and the binary call
at the operating thresholds stored in the model (chosen on validation by ``cxr-tf evaluate``).

Images get the training records' preprocessing (:func:`cxr_tf.models.image_input`); the model
file carries everything that takes, so a model needs no run directory beside it."""

from __future__ import annotations

import logging

import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrDataError
from cxr_tf.core.progress import progress

log = logging.getLogger(__name__)


def predict_images(model_path, inputs, *, batch_size: int = 16, skip_bad: bool = False,
                   out_csv=None) -> tuple[pd.DataFrame, list]:
    """Predict every image; returns (table, skipped) where skipped lists (file, reason).

    An unreadable image raises :class:`CxrImageError` naming it, unless ``skip_bad``."""
    from cxr_tf.models import collect_images, findings_of, iter_batches, load_model, stack, thresholds_of

    model = load_model(model_path)
    findings, thresholds = findings_of(model), thresholds_of(model)
    files = collect_images(inputs)
    if not files:
        raise CxrDataError(None, "no image files found in the given paths")
    rows, skipped = [], []
    with progress(total=len(files), desc="predict", unit="img") as bar:
        for batch in iter_batches(files, model, batch_size, skip_bad, skipped):
            probs = model.predict_on_batch(stack(batch))
            for item, p in zip(batch, probs):
                row = {"file": item.path, **{f"prob_{f}": float(p[j]) for j, f in enumerate(findings)}}
                if thresholds:
                    row.update({f"call_{f}": int(p[j] >= thresholds[f]) for j, f in enumerate(findings)})
                rows.append(row)
            bar.update(len(batch))
    table = pd.DataFrame(rows)
    if out_csv:
        atomic.write_csv(out_csv, table)
    return table, skipped
