"""``cxr-tf ensemble``: average several runs, or the top-k checkpoints of runs by a validation
metric, into one ``.keras`` model (:func:`cxr_tf.models.ensemble`), as CheXpert (top-10
checkpoints x 3 runs) and CheXNeXt do.

The output folder is a run directory for evaluate when the first source is one: ``model.keras``
(the ensemble), ``config.json`` and ``split_summary.json`` (the first run's, so ``cxr-tf evaluate
--run ENS_DIR`` finds the records and label policy), and ``ensemble.json`` (the members, their
epochs and scores).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrError
from cxr_tf.models.rundir import CONFIG, SPLIT_SUMMARY, RunDir

log = logging.getLogger(__name__)
BY = ("mean_auroc", "val_loss")


def score(row: dict, by: str = "mean_auroc", tasks=None) -> float:
    """One history row's selection score, higher is better: the mean validation AUROC (over
    ``tasks`` when given), or the validation loss negated."""
    if by == "val_loss":
        return -float(row.get("val_loss", math.inf))
    if tasks:
        values = [row.get(f"val_auroc_{t}") for t in tasks]
        if any(v is None for v in values):
            raise CxrDataError(None, f"the run's history has no AUROC for some of {list(tasks)}")
        values = [v for v in values if v == v]
        return sum(values) / len(values) if values else -math.inf
    return float(row.get("val_auroc_mean", -math.inf))


def top_checkpoints(run: RunDir, k: int, by: str = "mean_auroc", tasks=None) -> list[dict]:
    """The ``k`` best checkpoints of a run that are still on disk, by ``by`` over its history."""
    state = run.state
    if state is None:
        raise CxrDataError(run.path, "no completed epoch, so no checkpoint to ensemble")
    on_disk = {p.name: p for p in (run.path / "checkpoints").glob("epoch-*.keras")}
    rows = [dict(r, score=score(r, by, tasks)) for r in state["history"]
            if f"epoch-{int(r['epoch']):03d}.keras" in on_disk]
    best = sorted(rows, key=lambda r: -r["score"])[:k]
    if len(best) < k:
        log.warning("%s: %d checkpoint(s) on disk, %d asked (train with keep_checkpoints=%d)", run.path,
                    len(best), k, k)
    return [{"run": str(run.path), "epoch": int(r["epoch"]), "score": r["score"],
             "path": str(on_disk[f"epoch-{int(r['epoch']):03d}.keras"])} for r in best]


def build_ensemble(sources, out_dir, *, top_k: int | None = None, by: str = "mean_auroc", tasks=None) -> dict:
    """Ensemble ``sources`` (run directories: their ``model.keras``, or with ``top_k`` their best
    checkpoints; or ``.keras`` files) into ``out_dir``; returns the members."""
    from cxr_tf.models import contract_model, ensemble, load_checkpoint, load_model, save_model

    if by not in BY:
        raise CxrConfigError(f"unknown selection {by!r}", key="by", choices=BY)
    members, first_run = [], None
    for source in map(Path, sources):
        if source.is_dir():
            run = RunDir(source)
            first_run = first_run or run
            if top_k:
                members += top_checkpoints(run, top_k, by, tasks)
            else:
                members.append({"run": str(run.path), "path": str(run.model_path), "epoch": None, "score": None})
        elif source.is_file():
            members.append({"run": None, "path": str(source), "epoch": None, "score": None})
        else:
            raise CxrDataError(source, "no such run directory or model file")
    if not members:
        raise CxrConfigError("nothing to ensemble", key="sources")
    models = []
    for m in members:
        try:
            models.append(load_model(m["path"]))
        except CxrError:   # a training checkpoint of a U-MultiClass run: its logits model
            models.append(contract_model(load_checkpoint(m["path"])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    combined = ensemble(models)
    save_model(combined, out / "model.keras")
    if first_run is not None:
        for name in (CONFIG, SPLIT_SUMMARY):
            with atomic.atomic_path(out / name) as tmp:
                shutil.copyfile(first_run.path / name, tmp)
    atomic.write_json(out / "ensemble.json", {"members": members, "by": by, "tasks": list(tasks or []),
                                              "top_k": top_k})
    log.info("ensembled %d model(s) into %s", len(members), out / "model.keras")
    return {"members": members, "model": str(out / "model.keras"), "keras_model": combined}
