"""``report.md`` of a reproduction: our AUROC beside the paper's table, the split, the recipe; for
a recipe with uncertainty policies, one column per policy run beside the paper's per-policy
values (cells that could not be checked against the paper's text carry its mark, ‡)."""

from __future__ import annotations

from cxr_tf.core import cards

UNVERIFIED = "‡"


def _split_line(recipe: dict, split: str, reported: str) -> str:
    splits = cards.dataset_card(recipe["dataset"]).get("splits", {})
    line = (f"- Split: **{split}** ({splits.get(f'{split}_description', split)}); the paper's: "
            f"{recipe.get('paper', {}).get('split', 'not stated')}. {recipe['reference'].get('note', '').strip()}")
    if reported == "val":
        line += ("\n- The records have no labelled test split, so the validation split is both the model-selection "
                 "and the reported split, as in the paper: these numbers are optimistic by the selection.")
    return line


def _files(single: bool) -> list[str]:
    where = "`run/`" if single else "`runs/<policy>/` (and `runs/<policy>/ensemble/`)"
    return ["## Files", "", f"- {where}: `model.keras` (stand-alone: takes raw grayscale pixels, carries findings, "
            "normalization and thresholds), `logs/` (TensorBoard), `metrics.json`, `metrics.csv`, "
            "`predictions_<split>.csv`, ROC/PR/confusion figures", ""]


def render_report(recipe: dict, metrics: dict, split: str, demo: bool, recipe_table: str, elapsed: float,
                  reported: str = "test") -> str:
    """report.md: our per-class AUROC beside the paper's table, the split, and the recipe."""
    ref = recipe["reference"]
    cols = ref["columns"]
    ours = {r["finding"]: r for r in metrics["per_class"]}
    lines = [f"# Reproduction: {recipe['title']}", ""]
    if demo:
        lines += ["**Demo on synthetic phantoms.** These numbers check that the whole chain works; "
                  "phantoms are not radiographs, so they are not comparable with the paper's.", ""]
    lines += [_split_line(recipe, split, reported),
              f"- {reported.capitalize()} images: {metrics['images']}; AUROC 95% CIs from "
              f"{metrics['bootstrap']['resamples']} "
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
              "", "## Recipe", "", recipe_table, "", *_files(True)]
    return "\n".join(lines)


def render_policy_report(recipe: dict, results: dict, split: str, reported: str, demo: bool, recipe_table: str,
                         elapsed: float) -> str:
    """report.md for a recipe with uncertainty policies: per task, our AUROC (95% CI) for each
    policy run beside the paper's value for that policy (‡: not verified against its text),
    then the mean over the tasks."""
    ref = recipe["reference"]
    tasks = list(ref["auroc"])
    lines = [f"# Reproduction: {recipe['title']}", ""]
    if demo:
        lines += ["**Demo on synthetic phantoms.** These numbers check that the whole chain works; "
                  "phantoms are not radiographs, so they are not comparable with the paper's.", ""]
    some = next(iter(results.values()))
    lines += [_split_line(recipe, split, reported),
              f"- {reported.capitalize()} images: {some['metrics']['images']}; AUROC 95% CIs from "
              f"{some['metrics']['bootstrap']['resamples']} image-level bootstrap resamples.",
              f"- Each policy: one run, its top {some['members']} checkpoint(s) by mean validation AUROC over the "
              f"{len(tasks)} tasks ensembled (the paper: the top 10 of each of 3 runs).",
              f"- Wall time (synthesis or prepare, all runs, ensembles, evaluation, report): {elapsed / 60:.1f} min.",
              "", f"## AUROC beside {ref['source']}", "",
              "Ours (95% CI), then the paper's value for the same policy in parentheses; "
              f"{UNVERIFIED} marks a paper value not verified against its text.", ""]
    names = list(results)
    lines += ["| Task | " + " | ".join(results[n]["label"] for n in names) + " |", "|---|" + "---|" * len(names)]
    for t in tasks + ["mean"]:
        cells = []
        for n in names:
            r = results[n]
            mine = r["mean"] if t == "mean" else r["per_class"].get(t)
            text = f"{mine[0]:.3f} ({mine[1]:.3f}-{mine[2]:.3f})" if mine else "n/a"
            col = r["paper_column"]
            if col is not None and t != "mean":
                text += f" ({ref['auroc'][t][col]:.3f}{'' if ref['verified'][t][col] else UNVERIFIED})"
            elif col is not None:
                text += f" ({sum(ref['auroc'][k][col] for k in tasks) / len(tasks):.3f}, computed)"
            cells.append(text)
        lines.append(f"| {'**mean**' if t == 'mean' else t} | " + " | ".join(cells) + " |")
    lines += ["", "Paper means are computed from its columns.", "", "## Recipe", "", recipe_table, "",
              *_files(False)]
    return "\n".join(lines)
