"""``cxr-tf reproduce <paper>``: prepare -> train -> evaluate (-> localize) with the paper's recipe
from ``reproductions/<paper>.toml``, ending in ``OUT/report.md`` beside the paper's published numbers.

A recipe's ``[train]`` table holds :class:`cxr_tf.config.TrainConfig` fields (refused if unknown),
``[prepare]`` the records' stored size, ``[paper]`` the recipe as the paper states it (shown beside
ours), ``[reference]`` the paper's tables, and ``[demo]`` the same chain on a freshly synthesized
phantom dataset in the real layout (scaled down to finish on a laptop CPU; phantom numbers check
the machinery and are not comparable with the paper).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cxr_tf import atomic, cards
from cxr_tf.config import TrainConfig
from cxr_tf.errors import CxrConfigError, CxrDataError

log = logging.getLogger(__name__)


def resolve(paper: str, demo: bool = False, overrides: dict | None = None) -> tuple[TrainConfig, dict]:
    """(the train config to run, unresolved; the paper's stated recipe): the recipe's ``[train]``,
    beneath ``[demo.train]`` with ``demo``, beneath ``overrides`` (TrainConfig fields)."""
    recipe = cards.reproduction(paper)
    where = f"reproductions/{paper}.toml"
    values = dict(recipe.get("train", {}))
    TrainConfig.from_mapping(values, where=f"{where} [train]")
    if demo:
        demo_train = recipe.get("demo", {}).get("train", {})
        TrainConfig.from_mapping(demo_train, where=f"{where} [demo.train]")
        values.update(demo_train)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_mapping(values, where=where), dict(recipe.get("paper", {}))


def _described(key: str, cfg: TrainConfig, split: str | None):
    """Our value for a recipe row that is not a TrainConfig field."""
    from cxr_tf.explain.boxes import HEAT_THRESHOLDS
    from cxr_tf.localize import THRESHOLDS
    aug = ["random horizontal flip"] if cfg.hflip else []
    aug += [f"random crop {cfg.crop_scale}"] if cfg.crop_scale else []
    aug += [f"rotation ±{cfg.rotation:g}°"] if cfg.rotation else []
    return {
        "augment": ", ".join(aug) or "none",
        "optimizer": f"Adam, beta {cfg.beta_1:g} / {cfg.beta_2:g} (fused kernel, same update)",
        "lr_schedule": f"divide by {1 / cfg.plateau_factor:g} when validation loss plateaus "
                       f"({cfg.plateau_patience} epoch)",
        "checkpoint": "lowest validation loss (run/model.keras)",
        "split": split or "see the report's split line",
        "heatmap_thresholds": list(HEAT_THRESHOLDS),
        "localization_T": list(THRESHOLDS),
        "training": "cxr-tf train (Keras 3)",
    }.get(key, "")


def dry_run_table(cfg: TrainConfig, paper: dict, split: str | None = None) -> str:
    """The resolved recipe beside the paper's stated one, as Markdown: every key the paper
    states, then every field our recipe sets that the paper does not."""
    resolved = cfg.resolved()
    keys = list(paper) + [k for k in sorted(cfg.given) if k not in paper and k not in ("records", "out")]
    lines = ["| setting | this run | paper |", "|---|---|---|"]
    for key in keys:
        ours = getattr(resolved, key) if hasattr(resolved, key) else _described(key, resolved, split)
        lines.append(f"| {key} | {ours} | {paper.get(key, '')} |")
    return "\n".join(lines)


def _records(recipe: dict, dataset: str, data_dir, out: Path, split: str, size: int, allow_missing: bool):
    """Prepare the records (or reuse ones prepared with the same split and size)."""
    from cxr_tf.prepare import prepare
    from cxr_tf.recordsdir import load_summary
    records = out / "records"
    try:
        summary = load_summary(records)
        if summary["config"]["split"] == split and summary["config"]["size"] == size:
            log.info("reusing %s", records)
            return records
    except CxrDataError:
        pass
    prepare(dataset, data_dir, records, split=split, size=size, allow_missing=allow_missing)
    return records


def reproduce(paper: str, out, data_dir=None, *, split: str = "official", demo: bool = False,
              dry_run: bool = False, allow_missing: bool = False, overrides: dict | None = None,
              callbacks=None) -> dict:
    """Run the chain; returns paths and headline numbers (see the module doc). ``callbacks``:
    a function of the resolved config and run directory returning extra training callbacks."""
    cfg, paper_recipe = resolve(paper, demo, overrides)
    recipe = cards.reproduction(paper)
    if dry_run:
        return {"table": dry_run_table(cfg, paper_recipe), "settings": cfg.resolved().to_dict()}
    dataset = recipe["dataset"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    size = int(recipe.get("prepare", {}).get("size", 256))
    if demo:
        from cxr_tf.sources import synth_writer
        d = recipe.get("demo", {})
        phantom = out / "phantom"
        if not (phantom / ".complete").is_file():
            info = synth_writer(dataset)(phantom, n_images=d.get("images", 1500), n_patients=d.get("patients"),
                                         size=d.get("synth_size", 128), seed=d.get("seed", 0))
            atomic.write_text(phantom / ".complete", info.get("data_dir", str(phantom)) + "\n")
        marked = Path((phantom / ".complete").read_text().strip())
        data_dir = marked if marked.is_dir() else phantom
        split = d.get("prepare", {}).get("split", split)
        size = int(d.get("prepare", {}).get("size", size))
    elif data_dir is None:
        raise CxrConfigError("is required (or use --demo)", key="data_dir")
    records = _records(recipe, dataset, data_dir, out, split, size, allow_missing)

    from cxr_tf.evaluate import evaluate
    from cxr_tf.train import planned_config, train
    run = out / "run"
    values = {**cfg.given_values(), "records": str(records), "out": str(run)}
    resume = (run / "state.json").is_file()
    tc = TrainConfig.from_mapping(values)
    extra = callbacks(planned_config(tc, resume)[0], run) if callbacks else []
    train(tc, resume=resume, callbacks=extra)
    metrics = evaluate(run, split="test", n_boot=int(recipe.get("demo", {}).get("bootstrap", 1000)) if demo else 1000)
    localization = None
    from cxr_tf.recordsdir import RecordsDir
    if len(RecordsDir(records).boxes("test")):
        from cxr_tf.localize import localize_run
        localize_run(run, method="cam")
        localization = (run / "localization.md").read_text()
    elapsed = time.perf_counter() - t0
    report = render_report(recipe, metrics, split, demo, dry_run_table(tc, paper_recipe, split), elapsed)
    if localization:
        section = ("## Weakly-supervised localization (CAM, test images with boxes)\n\n"
                   + localization.split("\n", 2)[2] + "\n")
        report = report.replace("## Recipe", section + "## Recipe", 1)
    atomic.write_text(out / "report.md", report)
    return {"report": str(out / "report.md"), "mean_auroc": metrics["mean_auroc"], "seconds": elapsed,
            "run": str(run)}


def render_report(recipe: dict, metrics: dict, split: str, demo: bool, recipe_table: str, elapsed: float) -> str:
    """report.md: our per-class AUROC beside the paper's table, the split, and the recipe."""
    ref = recipe["reference"]
    cols = ref["columns"]
    splits = cards.dataset_card(recipe["dataset"]).get("splits", {})
    ours = {r["finding"]: r for r in metrics["per_class"]}
    lines = [f"# Reproduction: {recipe['title']}", ""]
    if demo:
        lines += ["**Demo on synthetic phantoms.** These numbers check that the whole chain works; "
                  "phantoms are not radiographs, so they are not comparable with the paper's.", ""]
    lines += [f"- Split: **{split}** ({splits.get(f'{split}_description', split)}); "
              f"the paper's: {recipe.get('paper', {}).get('split', 'not stated')}. {ref.get('note', '').strip()}",
              f"- Test images: {metrics['images']}; AUROC 95% CIs from {metrics['bootstrap']['resamples']} "
              "image-level bootstrap resamples.",
              f"- Wall time (synthesis or prepare, train, evaluate, localize, report): {elapsed / 60:.1f} min.", "",
              f"## AUROC beside {ref['source']}", "",
              "| Pathology | ours (95% CI) | " + " | ".join(cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for f, vals in ref["auroc"].items():
        r = ours.get(f)
        mine = f"{r['auroc']:.4f} ({r['auroc_ci_low']:.3f}-{r['auroc_ci_high']:.3f})" if r else "n/a"
        lines.append(f"| {f} | {mine} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    m = ours["mean"]
    lines.append(f"| **mean** | **{m['auroc']:.4f}** ({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f}) | "
                 + " | ".join(f"{v:.4f}" for v in ref["mean"]) + " |")
    lines += ["", "Paper means are computed from the columns (the paper prints none).",
              "", "## Recipe", "", recipe_table, "",
              "## Files", "", "- `run/model.keras` (stand-alone: takes raw grayscale pixels, carries findings, "
              "normalization and thresholds), `run/logs/` (TensorBoard), `run/metrics.json`, "
              "`run/metrics.csv`, `run/predictions_test.csv`, `run/roc_curves.png`, `run/pr_curves.png`, "
              "`run/confusion_matrices.png`", ""]
    return "\n".join(lines)
