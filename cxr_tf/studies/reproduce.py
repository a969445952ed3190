"""``cxr-tf reproduce <paper>``: prepare -> train -> evaluate (-> localize) with the paper's recipe
from ``reproductions/<paper>.toml``, ending in ``OUT/report.md`` beside the paper's published numbers.

A recipe's ``[train]`` table holds :class:`cxr_tf.training.config.TrainConfig` fields (refused if unknown),
``[prepare]`` the records' stored size, ``[paper]`` the recipe as the paper states it (shown beside
ours), ``[reference]`` the paper's tables, and ``[demo]`` the same chain on a freshly synthesized
phantom dataset in the real layout (scaled down to finish on a laptop CPU; phantom numbers check
the machinery and are not comparable with the paper).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cxr_tf.core import atomic, cards
from cxr_tf.studies.reports import render_policy_report, render_report
from cxr_tf.training.config import TrainConfig
from cxr_tf.core.settings import layered
from cxr_tf.evaluation.thresholds import parse_rule
from cxr_tf.records.phantom import Demo
from cxr_tf.core.errors import CxrConfigError, CxrDataError

log = logging.getLogger(__name__)


def resolve(paper: str, demo: bool = False, overrides: dict | None = None) -> tuple[TrainConfig, dict]:
    """(the train config to run, unresolved; the paper's stated recipe): the recipe's ``[train]``,
    beneath ``[demo.train]`` with ``demo``, beneath ``overrides`` (TrainConfig fields)."""
    recipe = cards.reproduction(paper)
    where = f"reproductions/{paper}.toml"
    TrainConfig.from_mapping(recipe.get("train", {}), where=f"{where} [train]")
    demo_train = Demo.of(recipe.get("demo"), where=f"{where} [demo]").train if demo else {}
    TrainConfig.from_mapping(demo_train, where=f"{where} [demo.train]")
    values = layered(recipe.get("train"), demo_train, overrides)
    return TrainConfig.from_mapping(values, where=where), dict(recipe.get("paper", {}))


def _described(key: str, cfg: TrainConfig, split: str | None):
    """Our value for a recipe row that is not a TrainConfig field."""
    from cxr_tf.explain.boxes import HEAT_THRESHOLDS
    from cxr_tf.explain.localize import THRESHOLDS
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
        "ensemble": f"top {cfg.keep_checkpoints} checkpoint(s) by {cfg.select_by}, one run per policy",
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
    """Prepare the records with the recipe's source options (or reuse ones prepared alike)."""
    from cxr_tf.records.prepare import prepare
    from cxr_tf.records.reader import load_summary
    records = out / "records"
    options = dict(recipe.get("prepare", {}).get("options", {}))
    try:
        c = load_summary(records)["config"]
        if (c["split"], c["size"], c.get("options", {})) == (split, size, options):
            log.info("reusing %s", records)
            return records
    except CxrDataError:
        pass
    prepare(dataset, data_dir, records, split=split, size=size, allow_missing=allow_missing, options=options)
    return records


def reproduce(paper: str, out, data_dir=None, *, split: str = "official", demo: bool = False,
              dry_run: bool = False, allow_missing: bool = False, overrides: dict | None = None,
              callbacks=None, policy: str | None = None) -> dict:
    """Run the chain; returns paths and headline numbers (see the module doc). ``callbacks``:
    a function of the resolved config and run directory returning extra training callbacks.
    ``policy``: for a recipe with uncertainty policies, one of them, a set of them (``all``), or
    ``paper`` (the default; ``--demo`` runs the recipe's demo policy)."""
    cfg, paper_recipe = resolve(paper, demo, overrides)
    recipe = cards.reproduction(paper)
    parse_rule(recipe.get("evaluate", {}).get("threshold_rule"))      # a bad rule is refused before any work
    _localize_method(recipe)                                              # and so is an unknown heatmap method
    if dry_run:
        return {"table": dry_run_table(cfg, paper_recipe), "settings": cfg.resolved().to_dict()}
    if recipe.get("chain"):          # a study: a chain of steps (cxr_tf.studies.weak_labels), not one training run
        from cxr_tf.studies.weak_labels import CHAINS
        if recipe["chain"] not in CHAINS:
            raise CxrConfigError(f"reproductions/{paper}.toml: unknown chain {recipe['chain']!r}", key="chain",
                                 choices=CHAINS)
        return CHAINS[recipe["chain"]](recipe, out, data_dir, demo=demo, overrides=overrides)
    dataset = recipe["dataset"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    size = int(recipe.get("prepare", {}).get("size", 256))
    d = Demo.of(recipe.get("demo"))
    if demo:
        data_dir = d.data_dir(out, dataset)
        split = d.prepare.get("split", split)
        size = int(d.prepare.get("size", size))
    elif data_dir is None:
        raise CxrConfigError("is required (or use --demo)", key="data_dir")
    records = _records(recipe, dataset, data_dir, out, split, size, allow_missing)

    from cxr_tf.records.reader import RecordsDir
    rec = RecordsDir(records)
    reported = "test" if "test" in rec.splits else "val"
    n_boot = int(d.extra.get("bootstrap", 1000)) if demo else 1000
    names = policy_runs(recipe, policy, demo)
    results = {}
    for name in names:
        chosen = {"uncertain": recipe["policies"][name]} if name else {}
        run_cfg = resolve(paper, demo, {**(overrides or {}), **chosen})[0]
        run = out / "run" if name is None else out / "runs" / name
        results[name] = _train_and_evaluate(recipe, run_cfg, records, run, reported, n_boot, demo, callbacks)
    elapsed = time.perf_counter() - t0
    table = dry_run_table(resolve(paper, demo, overrides)[0], paper_recipe, split)
    if names == [None]:
        first = results[None]
        report = render_report(recipe, first["metrics"], split, demo, table, elapsed, reported)
        if len(rec.boxes("test")):
            from cxr_tf.explain.localize import localize_run
            method = _localize_method(recipe)
            localize_run(first["model_dir"], method=method, n_boot=n_boot)
            section = (f"## Weakly-supervised localization ({method}, test images with boxes)\n\n"
                       + (Path(first["model_dir"]) / "localization.md").read_text().split("\n", 2)[2] + "\n")
            report = report.replace("## Recipe", section + "## Recipe", 1)
        headline = first["metrics"]["mean_auroc"]
    else:
        report = render_policy_report(recipe, results, split, reported, demo, table, elapsed)
        headline = {n: r["mean"][0] for n, r in results.items()}
    atomic.write_text(out / "report.md", report)
    return {"report": str(out / "report.md"), "mean_auroc": headline, "seconds": elapsed,
            "runs": {str(n): r["model_dir"] for n, r in results.items()}}


def policy_runs(recipe: dict, policy: str | None, demo: bool) -> list:
    """The policy names to run (``[None]``: a recipe without policies, one run)."""
    if "policies" not in recipe:
        if policy:
            raise CxrConfigError(f"the {recipe['name']} recipe has no uncertainty policies", key="policy")
        return [None]
    policy = policy or (Demo.of(recipe.get("demo")).extra.get("policy") if demo else None) or "paper"
    sets = recipe.get("policy_sets", {})
    if policy in sets:
        return list(sets[policy])
    if policy not in recipe["policies"]:
        raise CxrConfigError(f"unknown policy {policy!r}", key="policy", choices=[*recipe["policies"], *sets])
    return [policy]


def _train_and_evaluate(recipe, cfg: TrainConfig, records, run: Path, reported: str, n_boot: int, demo: bool,
                        callbacks) -> dict:
    """One run: train (or resume), ensemble its top checkpoints when the recipe says so, evaluate
    on the reported split; returns the numbers the report needs."""
    import numpy as np
    import pandas as pd

    from cxr_tf.evaluation.evaluate import bootstrap_auroc, evaluate
    from cxr_tf.evaluation.metrics import auroc_per_class
    from cxr_tf.training.train import planned_config, train
    tc = TrainConfig.from_mapping({**cfg.given_values(), "records": str(records), "out": str(run)})
    resume = (run / "state.json").is_file()
    extra = callbacks(planned_config(tc, resume)[0], run) if callbacks else []
    train(tc, resume=resume, callbacks=extra)
    model_dir, members, model = run, 1, None
    ens = layered(recipe.get("ensemble"), Demo.of(recipe.get("demo")).extra.get("ensemble") if demo else None)
    tasks = list(cards.dataset_card(recipe["dataset"])[recipe["tasks"]]) if "tasks" in recipe else None
    if int(ens.get("top_k", 1)) > 1:
        from cxr_tf.evaluation.run_ensemble import build_ensemble
        built = build_ensemble([run], run / "ensemble", top_k=int(ens["top_k"]), by=ens.get("by", "mean_auroc"),
                               tasks=tasks)
        model_dir, members, model = run / "ensemble", len(built["members"]), built["keras_model"]
    metrics = evaluate(model_dir, split=reported, n_boot=n_boot, model=model,
                       threshold_rule=recipe.get("evaluate", {}).get("threshold_rule"))
    out = {"metrics": metrics, "model_dir": str(model_dir), "members": members,
           "label": run.name if run.name != "run" else "ours"}
    if tasks:
        preds = pd.read_csv(Path(model_dir) / f"predictions_{reported}.csv")
        y = preds[[f"label_{t}" for t in tasks]].to_numpy(np.float32)
        p = preds[[f"prob_{t}" for t in tasks]].to_numpy(np.float32)
        auc = auroc_per_class(y, p)
        low, high, mean_ci = bootstrap_auroc(y, p, n_boot)
        out["per_class"] = {t: (auc[i], low[i], high[i]) for i, t in enumerate(tasks)}
        out["mean"] = (float(np.nanmean(auc)), *mean_ci)
        policy = run.name
        ref = recipe["reference"]
        out["paper_column"] = ref["policies"].index(policy) if policy in ref.get("policies", []) else None
        out["label"] = ref["columns"][out["paper_column"]] if out["paper_column"] is not None else policy
    return out


def _localize_method(recipe: dict) -> str:
    """The recipe's ``[localize] method`` (default: the explain registry's default), checked."""
    from cxr_tf.explain.methods import METHODS
    from cxr_tf.explain.registry import DEFAULT_METHOD
    method = recipe.get("localize", {}).get("method", DEFAULT_METHOD)
    if method not in METHODS:
        raise CxrConfigError(f"recipe {recipe.get('name')!r}: unknown [localize] method {method!r}",
                             key="localize.method", choices=METHODS)
    return method
