"""``cxr-tf reproduce <paper>``: prepare -> train -> evaluate with the paper's recipe from
``reproductions/<paper>.toml``, ending in ``OUT/report.md`` beside the paper's published numbers.

``--demo`` runs the same chain on a freshly synthesized phantom ChestX-ray14 (the recipe's
``[demo]`` section scales image size and epochs down to finish on a laptop CPU); phantom numbers
check the machinery, they are not comparable with the paper.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cxr_tf import atomic, cards
from cxr_tf.errors import CxrError

log = logging.getLogger(__name__)
RECIPE_TO_TRAIN = {"model": "backbone", "head": "head", "image_size": "image_size", "loss": "loss",
                   "learning_rate": "lr", "batch_size": "batch_size", "beta_1": "beta_1",
                   "beta_2": "beta_2", "weights": "weights", "epochs": "epochs",
                   "bn_momentum": "bn_momentum", "transition_depth": "transition_depth",
                   "lse_r": "lse_r"}


def resolve(paper: str, demo: bool = False, **overrides) -> tuple[dict, dict]:
    """(train settings, the paper's stated recipe) for a paper, with demo and user overrides."""
    cfg = cards.reproduction(paper)
    recipe = dict(cfg["recipe"])
    settings = {"preset": recipe.get("preset", cfg.get("preset", paper))}
    for key, target in RECIPE_TO_TRAIN.items():
        if key in recipe:
            settings[target] = recipe[key]
    settings["hflip"] = bool(recipe.get("augment", {}).get("hflip", True))
    if demo:
        settings.update({k: v for k, v in cfg.get("demo", {}).get("train", {}).items()})
    settings.update({k: v for k, v in overrides.items() if v is not None and k not in ("allow_missing", "store_size")})
    return settings, recipe


def dry_run_table(paper: str, settings: dict, recipe: dict) -> str:
    """The resolved recipe beside the paper's stated one, as Markdown."""
    ours = dict(settings)
    ours["augment"] = "horizontal flip" if settings.get("hflip", True) else "none"
    ours.update({"optimizer": "Adam (fused kernel, same update)",
                 "lr_schedule": "ReduceLROnPlateau(val_loss, factor 0.1, patience 1)",
                 "checkpoint": "lowest validation loss (run/model.keras)",
                 "normalization": _backbone_normalization(settings.get("backbone", "densenet121")),
                 "split": "see the report's split line", "heatmap_thresholds": "[60, 180]",
                 "localization_T": "[0.1, 0.25, 0.5, 0.75, 0.9]", "training": "cxr-tf train (Keras 3)"})
    inverse = {v: k for k, v in RECIPE_TO_TRAIN.items()}
    keys = [k for k in ours if k not in ("hflip", "preset")]
    keys += [k for k in recipe if k not in keys and RECIPE_TO_TRAIN.get(k) not in keys]
    lines = ["| setting | this run | paper |", "|---|---|---|"]
    for key in keys:
        lines.append(f"| {key} | {ours.get(key, '(default)')} | {recipe.get(inverse.get(key, key), '')} |")
    return "\n".join(lines)


def _backbone_normalization(backbone: str) -> str:
    """The input normalization a backbone's weights expect (read from the presets data file,
    without importing Keras)."""
    from pathlib import Path as _P
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    with open(_P(__file__).parent / "models" / "presets.toml", "rb") as fh:
        norm = tomllib.load(fh)["backbones"][backbone]["normalization"]
    return {"imagenet": "ImageNet mean/std"}.get(norm, f"{norm.split(':')[-1]} preprocess_input")


def reproduce(paper: str, out, data_dir=None, *, split: str = "official", demo: bool = False,
              dry_run: bool = False, **overrides) -> dict:
    """Run the chain; returns paths and headline numbers. See the module doc."""
    settings, recipe = resolve(paper, demo, **overrides)
    if dry_run:
        return {"table": dry_run_table(paper, settings, recipe), "settings": settings}
    cfg = cards.reproduction(paper)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if demo:
        from cxr_tf.synth.chestxray14 import write_dataset
        d = cfg.get("demo", {})
        data_dir = out / "phantom"
        if not (data_dir / "Data_Entry_2017_v2020.csv").is_file():
            write_dataset(data_dir, n_images=d.get("images", 1500), n_patients=d.get("patients"),
                          size=d.get("synth_size", 128), seed=d.get("seed", 0))
        split = d.get("split", split)
    elif data_dir is None:
        raise CxrError("--data-dir is required (or use --demo)")
    from cxr_tf.prepare import load_summary, prepare
    records = out / "records"
    store = int(cfg.get("demo", {}).get("store_size", 256)) if demo else int(overrides.get("store_size") or 256)
    try:
        summary = load_summary(records)
        if summary["config"]["split"] != split or summary["config"]["size"] != store:
            raise CxrError("stale")
        log.info("reusing %s", records)
    except CxrError:
        prepare(cfg["dataset"], data_dir, records, split=split, size=store,
                allow_missing=bool(overrides.get("allow_missing")))
    from cxr_tf.evaluate import evaluate
    from cxr_tf.train import TrainConfig, train
    run = out / "run"
    known = TrainConfig.__dataclass_fields__
    tc = TrainConfig(records=str(records), out=str(run), **{k: v for k, v in settings.items() if k in known})
    if (run / "state.json").is_file():
        train(tc, resume=True)
    else:
        train(tc)
    metrics = evaluate(run, split="test", n_boot=int(cfg.get("demo", {}).get("bootstrap", 1000)) if demo else 1000)
    localization = None
    if (records / "boxes.csv").is_file() and len((records / "boxes.csv").read_text().splitlines()) > 1:
        from cxr_tf.localize import localize_run
        localize_run(run, method="cam")
        localization = (run / "localization.md").read_text()
    elapsed = time.perf_counter() - t0
    report = render_report(paper, cfg, metrics, split, demo, settings, recipe, elapsed)
    if localization:
        section = ("## Weakly-supervised localization (CAM, test images with boxes)\n\n"
                   + localization.split("\n", 2)[2] + "\n")
        report = report.replace("## Recipe", section + "## Recipe", 1)
    atomic.write_text(out / "report.md", report)
    return {"report": str(out / "report.md"), "mean_auroc": metrics["mean_auroc"], "seconds": elapsed,
            "run": str(run)}


def render_report(paper, cfg, metrics, split, demo, settings, recipe, elapsed) -> str:
    """report.md: our per-class AUROC beside the paper's table, the split, and the recipe."""
    ref = cfg["reference"]
    cols = ref["columns"]
    ours = {r["finding"]: r for r in metrics["per_class"]}
    lines = [f"# Reproduction: {cfg['title']}", ""]
    if demo:
        lines += ["**Demo on synthetic phantoms.** These numbers check that the whole chain works; "
                  "phantoms are not radiographs, so they are not comparable with the paper's.", ""]
    lines += [f"- Split: **{split}** ({'NIH official lists, validation carved out by patient' if split == 'official' else 'random, patient-level'}); "
              f"the paper's: {recipe.get('split', 'not stated')}. {ref.get('note', '').strip()}",
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
              "", "## Recipe", "", dry_run_table(paper, settings, recipe), "",
              "## Files", "", "- `run/model.keras`, `run/logs/` (TensorBoard), `run/metrics.json`, "
              "`run/metrics.csv`, `run/predictions_test.csv`, `run/roc_curves.png`, `run/pr_curves.png`, "
              "`run/confusion_matrices.png`", ""]
    return "\n".join(lines)


__all__ = ["reproduce", "resolve", "dry_run_table", "render_report", "json"]
