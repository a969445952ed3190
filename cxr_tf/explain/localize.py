"""Weakly-supervised localization scored with the ChestX-ray8 protocol (Wang et al. 2017, §4.2).

Heatmap -> normalise to [0, 255] -> threshold at 60 and at 180 -> one box around each connected
region (8-connectivity) of either binary map. A ground-truth box is correctly localized at T when
some generated box has IoU > T or IoBB > T, IoBB = intersection / area of the *generated* box.
Generated boxes that localize no ground-truth box of that finding in that image are false
positives. Nothing about the ground truth (size, position, count) enters box generation.

Per finding and T: accuracy = correct ground-truth boxes / ground-truth boxes, and average false
positives = false-positive boxes / images with that finding's ground truth (Table 4's layout).

Two diagnostics sit beside the table, to tell a model that looks in the wrong place from a CAM too
coarse to draw a tight box (both use the ground truth only for scoring):

- **pointing**: the heatmap's maximum lies within half a feature-map cell of a ground-truth box
  (the pointing game of Zhang et al. 2016, with a tolerance set by the CAM's stride);
- **ceiling**: the accuracy reached by an oracle CAM, the ground-truth box mask averaged over each
  cell of the model's S x S feature grid and upsampled like a real CAM. No model whose CAM lives
  on that grid can be expected to beat it; it only grows with S (input size / stride).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from cxr_tf.core import atomic, cards
from cxr_tf import sources
from cxr_tf.core.errors import CxrDataError
from cxr_tf.explain import chexlocalize
from cxr_tf.explain.boxes import THRESHOLDS, boxes_from_heatmap, intersection, iobb, iou, score_image
from cxr_tf.explain.coords import box_to_input, to_original
from cxr_tf.explain.methods import heatmaps
from cxr_tf.explain.registry import DEFAULT_METHOD

__all__ = ["DEFAULT_METHOD", "THRESHOLDS", "intersection", "iobb", "iou", "score_image"]
from cxr_tf.imaging import masks as masks_rle
from cxr_tf.records.reader import RecordsDir
from cxr_tf.models.rundir import RunDir

def grid_cam(boxes, image_size: int, grid: int) -> np.ndarray:
    """The oracle CAM for ``boxes`` ((x, y, w, h) in model-input pixels) on a ``grid`` x ``grid``
    feature map: each cell holds the fraction of it the boxes cover, and the map is upsampled to
    ``image_size`` bilinearly with half-pixel centres, as ``tf.image.resize`` upsamples a real CAM."""
    edges = np.arange(grid + 1) * (image_size / grid)
    cells = np.zeros((grid, grid))
    for x, y, w, h in boxes:
        cover_x = np.clip(np.minimum(edges[1:], x + w) - np.maximum(edges[:-1], x), 0, None)
        cover_y = np.clip(np.minimum(edges[1:], y + h) - np.maximum(edges[:-1], y), 0, None)
        cells = np.maximum(cells, np.outer(cover_y, cover_x) / (image_size / grid) ** 2)
    pos = (np.arange(image_size) + 0.5) * grid / image_size - 0.5
    rows = np.broadcast_to(pos[:, None], (image_size, image_size))
    return ndimage.map_coordinates(cells, [rows, rows.T], order=1, mode="nearest").astype(np.float32)


def oracle_ceiling(boxes: pd.DataFrame, grid: int, image_size: int, frame: float = 1024.0) -> pd.DataFrame:
    """Localization rows (as :func:`score_image`, plus image_id and finding) that the oracle CAM
    scores for a box list given in a square ``frame``-pixel original (the NIH box frame is 1024)
    fed to the model at ``image_size`` with a ``grid`` x ``grid`` CAM. Summarize with
    :func:`summarize` to get the resolution ceiling per finding and T."""
    missing = [c for c in ("image_id", "finding", "x", "y", "w", "h") if c not in boxes.columns]
    if missing:
        raise CxrDataError(None, f"box list lacks column(s) {missing}; expected image_id, finding, x, y, w, h")
    k = image_size / frame
    rows = []
    for (image_id, finding), g in boxes.groupby(["image_id", "finding"], sort=False):
        truth = [tuple(v * k for v in b) for b in g[["x", "y", "w", "h"]].itertuples(index=False, name=None)]
        for r in score_image(truth, boxes_from_heatmap(grid_cam(truth, image_size, grid))):
            rows.append({"image_id": image_id, "finding": finding, **r})
    return pd.DataFrame(rows)


def peak_hits(heat: np.ndarray, gt_boxes, tolerance: float) -> bool:
    """Pointing game: does the heatmap's maximum lie within ``tolerance`` pixels of a box?"""
    heat = np.asarray(heat)
    if not np.isfinite(heat).all() or heat.max() <= heat.min():
        return False
    py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cx, cy = px + 0.5, py + 0.5
    return any(x - tolerance <= cx <= x + w + tolerance and y - tolerance <= cy <= y + h + tolerance
               for x, y, w, h in gt_boxes)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per finding and T: accuracy over ground-truth boxes and average false positives per image
    (plus the pointing and ceiling diagnostics when ``rows`` carries them)."""
    groups = rows.groupby(["T", "finding"])
    parts = [groups["correct"].mean().rename("accuracy"),
             rows.drop_duplicates(["image_id", "finding", "T"]).groupby(["T", "finding"])["false_positives"]
             .mean().rename("avg_false_positives"),
             groups.size().rename("boxes")]
    if "peak_in_box" in rows:
        parts.append(groups["peak_in_box"].mean().rename("pointing"))
    if "ceiling_correct" in rows:
        parts.append(groups["ceiling_correct"].mean().rename("ceiling_accuracy"))
    return pd.concat(parts, axis=1).reset_index()


def diagnostics_markdown(summary: pd.DataFrame, findings, grid: int | None = None) -> str:
    """Per finding: boxes, pointing-game hit rate, and our accuracy beside the oracle ceiling at
    each T (see the module doc)."""
    present = [f for f in findings if f in set(summary["finding"])]
    ts = sorted(summary["T"].unique())
    idx = summary.set_index(["T", "finding"])
    lines = ["| finding | boxes | pointing | " + " | ".join(f"Acc / ceiling T={t}" for t in ts) + " |",
             "|---|---|---|" + "---|" * len(ts)]
    for f in present:
        first = idx.loc[(ts[0], f)]
        cells = [f"{idx.loc[(t, f), 'accuracy']:.2f} / {idx.loc[(t, f), 'ceiling_accuracy']:.2f}" for t in ts]
        lines.append(f"| {f} | {int(first['boxes'])} | {first['pointing']:.2f} | " + " | ".join(cells) + " |")
    where = f" on the model's {grid}x{grid} feature grid" if grid else ""
    lines += ["", "Pointing: the heatmap's peak lies within half a feature cell of a ground-truth box. "
              f"Ceiling: the accuracy of an oracle CAM (the box mask averaged{where}, upsampled like the "
              "real CAM); no CAM at this resolution can be expected to do better."]
    return "\n".join(lines)


def table_markdown(summary: pd.DataFrame, findings, reference: dict | None = None) -> str:
    """Table 4's layout (rows T x {Acc, AFP}, columns findings); the paper's values beside ours."""
    present = [f for f in findings if f in set(summary["finding"])]
    head = "| T(IoBB) | metric | " + " | ".join(present) + " |"
    lines = [head, "|---|---|" + "---|" * len(present)]
    idx = summary.set_index(["T", "finding"])
    ref_f = list(reference["findings"]) if reference else []
    for i, t in enumerate(sorted(summary["T"].unique())):
        for key, name, ref_key in (("accuracy", "Acc", "accuracy"), ("avg_false_positives", "AFP", "afp")):
            cells = []
            for f in present:
                ours = idx.loc[(t, f), key]
                paper = ""
                if reference and f in ref_f and t in reference["T"]:
                    paper = f" ({reference[ref_key][reference['T'].index(t)][ref_f.index(f)]:.2f})"
                cells.append(f"{ours:.2f}{paper}")
            lines.append(f"| {t} | {name} | " + " | ".join(cells) + " |")
    if reference:
        lines.append("")
        lines.append("Ours first; Wang et al. 2017 Table 4 in parentheses.")
    return "\n".join(lines)


@dataclass
class Localization:
    """What :func:`localize_run` measured: ChestX-ray8's rows (``fixed``: one per ground-truth box
    and T, Wang's fixed 60/180 levels) and their summary; CheXlocalize's per-pair scores at the
    tuned thresholds (``pairs``), its summary with CIs and ceilings (``chexlocalize``), the
    thresholds, where they were tuned, and the heatmap seconds per (image, finding) pair."""
    fixed: pd.DataFrame
    summary: pd.DataFrame
    pairs: pd.DataFrame
    chexlocalize: pd.DataFrame
    thresholds: dict
    tuned_on: str
    seconds_per_map: float
    method: str
    grid: int


def localize_run(run_dir, method: str = DEFAULT_METHOD, *, records=None, data_dir=None, split: str = "test",
                 tune_split: str | None = "val", batch_size: int = 16, write: bool = True,
                 n_boot: int = 1000, options: dict | None = None) -> Localization:
    """Score every ``split`` image that has a ground-truth box: heatmap for each boxed finding,
    mapped to original pixels, then (1) ChestX-ray8's protocol: boxes at the fixed levels, IoU/IoBB
    at every T, and (2) CheXlocalize's: one threshold per finding tuned on ``tune_split``'s boxes
    (or on half of the scored images by patient when that split has none), mIoU, hit rate and
    box accuracy, with bootstrap CIs and oracle ceilings (:mod:`cxr_tf.explain.chexlocalize`).

    Writes into the run directory: ``localization.csv`` and ``localization_summary.csv`` (fixed),
    ``localization_chexlocalize.csv``, ``localization_pairs.csv``, ``localization_thresholds.json``
    (the tuned thresholds, stored with the run) and ``localization.md`` (both tables).

    Boxes come from the records' ``boxes.csv`` (original pixels), or, with ``data_dir``, are
    re-read from the dataset's own box list and scaled to each file's size. A dataset's own
    segmentation masks (``masks.csv``) replace the rasterized boxes as mIoU's ground truth.
    ``options`` go to the heatmap method (e.g. ``{"samples": 50}`` for LIME)."""
    from cxr_tf.models import cam_layer, findings_of

    run = RunDir(run_dir)
    rec = run.records(records)
    model = run.load_model()
    findings = findings_of(model)
    grid = int(model.get_layer(cam_layer(model)).output.shape[1])
    patients = dict(zip(rec.manifest["image_id"], rec.manifest["patient"].astype(str)))
    masks = {(r.image_id, r.finding): r for r in rec.masks().itertuples(index=False)}
    fixed, pairs, spent = [], [], [0.0, 0]
    tune_gt = pd.DataFrame(columns=["image_id", "finding"])
    if tune_split and tune_split != split and tune_split in set(rec.manifest["split"]):
        tune_gt = _ground_truth(rec, data_dir, tune_split)
        tune_gt = tune_gt[tune_gt["finding"].isin(findings)]
    score_gt = _ground_truth(rec, data_dir, split)
    for which, gt in ((split, score_gt[score_gt["finding"].isin(findings)]), (tune_split, tune_gt)):
        for item in _explained(model, rec, which, gt, method, grid, batch_size, spent, options or {}):
            truth, heat, oracle, meta = item["truth"], item["heat"], item["oracle"], item["meta"]
            w, h = (int(v) for v in meta["orig_size"])
            m = masks.get((meta["image_id"], item["finding"]))
            truth_mask = (masks_rle.decode(m.rle, int(m.width), int(m.height)).astype(bool) if m is not None
                          else chexlocalize.rasterize(truth, (h, w)))
            ours, best = chexlocalize.pair_scores(heat, truth_mask, truth), \
                chexlocalize.pair_scores(oracle, truth_mask, truth)
            pairs.append({"image_id": meta["image_id"], "finding": item["finding"], "split": which,
                          "patient": patients.get(meta["image_id"], ""), **ours,
                          **{f"oracle_{k}": v for k, v in best.items()}})
            if which == split:
                cell = rec.stored_size / grid / float(np.mean(meta["affine"][:2]))   # a feature cell, original px
                hit = peak_hits(heat, truth, tolerance=cell / 2)
                ceiling = score_image(truth, boxes_from_heatmap(oracle))
                for r, c in zip(score_image(truth, boxes_from_heatmap(heat)), ceiling):
                    fixed.append({"image_id": meta["image_id"], "finding": item["finding"], **r, "peak_in_box": hit,
                                  "ceiling_correct": c["correct"]})
    table = pd.DataFrame(fixed, columns=["image_id", "finding", "T", "iou", "iobb", "correct", "false_positives",
                                        "peak_in_box", "ceiling_correct"])
    result = _chexlocalize(pairs, len(tune_gt) > 0, tune_split, split, n_boot)
    result = Localization(fixed=table, summary=summarize(table) if len(table) else pd.DataFrame(),
                          seconds_per_map=spent[0] / max(spent[1], 1), method=method, grid=grid, **result)
    if write:
        _write(run, result, findings)
    return result


def _chexlocalize(pairs: list, val_has_truth: bool, tune_split, split, n_boot) -> dict:
    frame = pd.DataFrame(pairs, columns=["image_id", "finding", "split", "patient", "hit", "iou", "correct",
                                         "oracle_hit", "oracle_iou", "oracle_correct"])
    if not len(frame):
        empty = chexlocalize.at_threshold(frame.assign(part=[]), {})
        return {"pairs": empty, "chexlocalize": chexlocalize.summarize(empty, empty), "thresholds": {},
                "tuned_on": "nothing (no annotated images)"}
    frame["part"] = chexlocalize.tuning_parts(frame, val_has_truth)
    tuned_on = (f"the {tune_split} split's annotated images" if val_has_truth else
                f"half of the {split} split's annotated images (split by patient; the {tune_split} split has none)")
    thresholds, oracle_t = chexlocalize.tune(frame), chexlocalize.tune(frame, "oracle_iou")
    scored = chexlocalize.at_threshold(frame, thresholds)
    oracle = chexlocalize.at_threshold(frame, oracle_t, prefix="oracle_")
    return {"pairs": scored, "chexlocalize": chexlocalize.summarize(scored, oracle, n_boot),
            "thresholds": thresholds, "tuned_on": tuned_on}


def _explained(model, rec, split, gt, method, grid, batch_size, spent, options):
    """Yield, per (boxed image, finding) of ``split``: the heatmap and the oracle CAM in original
    pixels, the ground-truth boxes and the image's placement."""
    import time

    from cxr_tf.models import findings_of, input_size_of
    from cxr_tf.pipeline import make_dataset
    if not len(gt):
        return
    findings, size, stored = findings_of(model), input_size_of(model), rec.stored_size
    wanted = set(gt["image_id"])
    ds = make_dataset(rec.path, split, training=False, include_meta=True, batch_size=batch_size,
                      image_size=size)        # the records' own labels (unused here): any dataset with boxes
    waiting = []

    def flush():
        t0 = time.perf_counter()
        maps = heatmaps(model, np.stack([p[0] for p in waiting]), [findings.index(p[2]) for p in waiting], method,
                        **options)
        spent[0] += time.perf_counter() - t0
        spent[1] += len(waiting)
        for (_, meta, finding), heat in zip(waiting, maps):
            place = {"image_size": size, "stored_size": stored, "affine": meta["affine"],
                     "orig_size": meta["orig_size"]}
            mine = gt[(gt["image_id"] == meta["image_id"]) & (gt["finding"] == finding)]
            truth = list(mine[["x", "y", "w", "h"]].itertuples(index=False, name=None))
            oracle = to_original(grid_cam([box_to_input(b, **place) for b in truth], size, grid), **place)
            yield {"meta": meta, "finding": finding, "truth": truth, "heat": to_original(heat, **place),
                   "oracle": oracle}
        waiting.clear()

    for x, _, meta in ds:
        ids = [i.decode() for i in meta["image_id"].numpy()]
        for k, image_id in enumerate(ids):
            if image_id not in wanted:
                continue
            m = {"image_id": image_id, "affine": meta["affine"][k].numpy(), "orig_size": meta["orig_size"][k].numpy()}
            for finding in sorted(set(gt.loc[gt["image_id"] == image_id, "finding"])):
                waiting.append((x[k].numpy(), m, finding))
            if len(waiting) >= batch_size:
                yield from flush()
    if waiting:
        yield from flush()


def _write(run: RunDir, result: Localization, findings) -> None:
    """The run directory's localization files (see :func:`localize_run`)."""
    atomic.write_csv(run.path / "localization.csv", result.fixed)
    atomic.write_csv(run.path / "localization_summary.csv", result.summary)
    atomic.write_csv(run.path / "localization_chexlocalize.csv", result.chexlocalize)
    atomic.write_csv(run.path / "localization_pairs.csv", result.pairs)
    atomic.write_text(run.path / "localization_thresholds.json", json.dumps(
        {"method": result.method, "protocol": "CheXlocalize: per-finding threshold on the [0, 1]-scaled heatmap, "
         "maximizing mean IoU", "tuned_on": result.tuned_on, "thresholds": result.thresholds}, indent=1) + "\n")
    ref = cards.reproduction("chestxray8")["reference"]["localization"]
    if len(result.fixed):
        body = (table_markdown(result.summary, findings, ref) + "\n\n### Diagnostics\n\n"
                + diagnostics_markdown(result.summary, findings, result.grid))
    else:
        body = "No boxed images."
    chex = chexlocalize.markdown(result.chexlocalize, result.tuned_on,
                                 f"{result.grid}x{result.grid} CAM grid")
    md = (f"# Localization ({result.method}, ChestX-ray8 protocol: fixed levels 60/180)\n\n{body}\n\n"
          f"## CheXlocalize protocol (tuned threshold per finding)\n\n{chex}\n\n"
          f"Heatmaps: {result.method}, {result.seconds_per_map:.3f} s per image and finding.\n")
    atomic.write_text(run.path / "localization.md", md)


def _ground_truth(records: RecordsDir, data_dir, split) -> pd.DataFrame:
    """Ground-truth boxes in original pixels for the split's images: the records' ``boxes.csv``,
    or the dataset's own box list re-read from ``data_dir`` and scaled to each file's size."""
    if data_dir is None:
        return records.boxes(split)
    config = records.summary["config"]
    src = sources.get(records.dataset).load(Path(data_dir), split=config["split"], seed=config.get("seed"),
                                            **config.get("options", {}))
    keep = set(records.split_frame(split)["image_id"])
    sizes = {i: tuple(wh) for i, wh in records.summary["image_sizes"].items() if i in keep}
    return sources.boxes_in_pixels(src.boxes, sizes, src.bbox_frame)
