"""``cxr-tf explain``: heatmaps for image files, in original-image pixel coordinates, written as
overlays (PNG) and raw arrays (``.npy``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.errors import CxrError, CxrImageError
from cxr_tf.progress import progress

log = logging.getLogger(__name__)


def _known_boxes(model_path) -> pd.DataFrame:
    """Ground-truth boxes (original pixels) from the run's records, when the run has them."""
    import json
    run = Path(model_path).resolve().parent
    try:
        records = Path(json.loads((run / "config.json").read_text())["records"])
        return pd.read_csv(records / "boxes.csv")
    except (OSError, KeyError, ValueError):
        return pd.DataFrame(columns=["image_id", "finding", "x", "y", "w", "h"])


def explain_files(model_path, inputs, out_dir, *, method: str = "gradcam", finding: str | None = None,
                  top: int = 1, batch_size: int = 8, skip_bad: bool = False) -> list[dict]:
    """Explain each image for ``finding`` (or its ``top`` most probable findings); write
    ``<stem>_<finding>_<method>.png`` overlays and ``.npy`` heatmaps into ``out_dir``."""
    import tensorflow as tf

    from cxr_tf.explain import heatmaps, to_original
    from cxr_tf.imaging import decode_file, fit
    from cxr_tf.localize import boxes_from_heatmap
    from cxr_tf.models import findings_of, load_model, normalization_of
    from cxr_tf.pipeline import preprocess_batch
    from cxr_tf.predict import collect_images, run_settings

    from cxr_tf.explain.overlay import save_overlay

    model = load_model(model_path)
    names = findings_of(model)
    if finding is not None and finding not in names:
        raise CxrError(f"finding {finding!r} is not an output of this model; outputs: {', '.join(names)}")
    settings = run_settings(model_path)
    size = int(model.input_shape[1])
    stored = int(settings["stored_size"] or size)
    norm = settings["normalization"] or normalization_of(model)
    boxes = _known_boxes(model_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in progress(collect_images(inputs), desc=f"explain ({method})", unit="img"):
        try:
            original = decode_file(path)
        except CxrImageError:
            if not skip_bad:
                raise
            log.warning("skipping unreadable %s", path)
            continue
        stored_img, aff = fit(original, stored, settings["aspect"])
        x = preprocess_batch(tf.constant(stored_img[None, ..., None]), size, normalization=norm).numpy()
        probs = model.predict(x, verbose=0)[0]
        targets = [names.index(finding)] if finding else list(np.argsort(-probs)[:top])
        maps = heatmaps(model, np.repeat(x, len(targets), axis=0), targets, method)
        h, w = original.shape
        for t, heat in zip(targets, maps):
            full = to_original(heat, image_size=size, stored_size=stored,
                               affine=(aff.sx, aff.sy, aff.tx, aff.ty), orig_size=(w, h))
            stem = f"{Path(path).stem}_{re.sub(r'[^A-Za-z0-9_]+', '_', names[t])}_{method.replace('+', 'pp')}"
            np.save(out / f"{stem}.npy", full)
            gt = boxes[(boxes["image_id"] == Path(path).name) & (boxes["finding"] == names[t])]
            gt_boxes = list(gt[["x", "y", "w", "h"]].itertuples(index=False, name=None))
            save_overlay(out / f"{stem}.png", original, full,
                         f"{Path(path).name}: {names[t]} p={probs[t]:.3f} ({method})", gt_boxes,
                         boxes_from_heatmap(full, levels=(180,)))
            written.append({"file": str(path), "finding": names[t], "probability": float(probs[t]),
                            "png": str(out / f"{stem}.png"), "npy": str(out / f"{stem}.npy")})
    return written
