"""``cxr-tf explain``: heatmaps for image files, in original-image pixel coordinates, written as
overlays (PNG) and raw arrays (``.npy``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.explain.boxes import boxes_from_heatmap
from cxr_tf.explain.coords import to_original
from cxr_tf.explain.methods import heatmaps
from cxr_tf.core.progress import progress
from cxr_tf.models.rundir import find_run

log = logging.getLogger(__name__)


def _known_boxes(model_path) -> pd.DataFrame:
    """Ground-truth boxes (original pixels) from the run's records, when the model sits in a run
    directory whose records are still there."""
    run = find_run(model_path)
    try:
        return run.records().boxes() if run else pd.DataFrame(columns=["image_id", "finding", "x", "y", "w", "h"])
    except CxrDataError as exc:
        log.info("no ground-truth boxes: %s", exc)
        return pd.DataFrame(columns=["image_id", "finding", "x", "y", "w", "h"])


def explain_files(model_path, inputs, out_dir, *, method: str = "gradcam", finding: str | None = None,
                  top: int = 1, batch_size: int = 8, skip_bad: bool = False) -> tuple[list[dict], list]:
    """Explain each image for ``finding`` (or its ``top`` most probable findings); write
    ``<stem>_<finding>_<method>.png`` overlays and ``.npy`` heatmaps into ``out_dir``. Returns
    (what was written, the skipped files with reasons)."""
    from cxr_tf.explain.overlay import save_overlay
    from cxr_tf.models import collect_images, findings_of, iter_batches, load_model, preprocessing_of, stack

    model = load_model(model_path)
    names = findings_of(model)
    if finding is not None and finding not in names:
        raise CxrConfigError(f"{finding!r} is not an output of this model; outputs: {', '.join(names)}",
                             key="finding")
    prep = preprocessing_of(model)
    boxes = _known_boxes(model_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = collect_images(inputs)
    written, skipped = [], []
    with progress(total=len(files), desc=f"explain ({method})", unit="img") as bar:
        for batch in iter_batches(files, model, batch_size, skip_bad, skipped):
            x = stack(batch)
            probs = model.predict(x, verbose=0)
            pairs = [(k, t) for k, p in enumerate(probs)
                     for t in ([names.index(finding)] if finding else np.argsort(-p)[:top])]
            maps = heatmaps(model, x[[k for k, _ in pairs]], [t for _, t in pairs], method)
            for (k, t), heat in zip(pairs, maps):
                item = batch[k]
                h, w = item.original.shape
                a = item.affine
                full = to_original(heat, image_size=prep["input_size"], stored_size=prep["stored_size"],
                                   affine=(a.sx, a.sy, a.tx, a.ty), orig_size=(w, h))
                stem = (f"{Path(item.path).stem}_{re.sub(r'[^A-Za-z0-9_]+', '_', names[t])}_"
                        f"{method.replace('+', 'p')}")
                with atomic.atomic_path(out / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
                    np.save(fh, full)
                # a box list keys an image by its file name (NIH) or by the name without its
                # extension (RSNA's patientId, SIIM's SOP UID)
                mine = boxes["image_id"].isin((Path(item.path).name, Path(item.path).stem))
                gt = boxes[mine & (boxes["finding"] == names[t])]
                save_overlay(out / f"{stem}.png", item.original, full,
                             f"{Path(item.path).name}: {names[t]} p={probs[k, t]:.3f} ({method})",
                             list(gt[["x", "y", "w", "h"]].itertuples(index=False, name=None)),
                             boxes_from_heatmap(full, levels=(180,)))
                written.append({"file": item.path, "finding": names[t], "probability": float(probs[k, t]),
                                "png": str(out / f"{stem}.png"), "npy": str(out / f"{stem}.npy")})
            bar.update(len(batch))
    return written, skipped
