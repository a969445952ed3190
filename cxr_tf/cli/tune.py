"""Hyperparameter search: ``cxr-tf tune --records DIR --out TUNE_DIR``."""

from __future__ import annotations

import click

from cxr_tf.cli.common import of, train_settings


@click.command("tune")
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Records directory from `cxr-tf prepare` (not needed with --demo).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Search directory (a rerun resumes it).")
@click.option("--search", default="random", show_default=True, type=of("cxr_tf.search.tune", "SEARCHES"),
              help="keras-tuner's RandomSearch, GridSearch or BayesianOptimization.")
@click.option("--trials", default=None, type=int,
              help="Trials in all, counting those already done [default: 10; grid: every combination; "
                   "--demo: the space's [demo] trials].")
@click.option("--space", "space", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Search-space TOML file [default: cxr_tf/search/space.toml].")
@click.option("--epochs", default=None, type=int, help="Epochs per trial [default: the space's [fixed]].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A TrainConfig field shared by every trial (over the space's [fixed]). Repeatable.")
@click.option("--demo", is_flag=True, help="Search a few tiny trials on a freshly synthesized NIH phantom.")
def tune(records, out, search, trials, space, epochs, sets, demo):
    """Search training hyperparameters with keras-tuner, by mean validation AUROC; writes
    OUT/trials.csv, OUT/best.toml (for `cxr-tf train --config`) and OUT/summary.json.

    Example: cxr-tf tune --demo --out runs/tune_demo"""
    from cxr_tf.search.tune import OBJECTIVE, tune as run

    overrides = train_settings(named={"epochs": epochs}, sets=sets)
    res = run(out, records, search=search, trials=trials, space=space, overrides=overrides, demo=demo,
              progress=click.echo)
    if res["role"] == "worker":
        click.echo(f"this worker's trials are done ({res['seconds']:.0f} s); the chief writes {out}/trials.csv")
        return
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        click.echo(pd.read_csv(f"{out}/trials.csv").to_string(index=False, na_rep="",
                                                             float_format=lambda v: f"{v:.4g}"))
    click.echo(f"{res['trials']} trial(s) ({res['completed']} completed, {res['failed']} failed) in "
               f"{res['seconds']:.0f} s; tables: {out}/trials.csv, {out}/summary.json")
    best = res["best"]
    if best is None:
        click.echo("no trial completed: nothing to retrain")
        return
    click.echo(f"best: trial {best['trial_id']}, {OBJECTIVE} {best[OBJECTIVE]:.4f} at epoch {best['best_epoch']}: "
               + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best["hyperparameters"].items()))
    click.echo(f"retrain: cxr-tf train --config {out}/best.toml --out RUN")


def register(group: click.Group) -> None:
    """Add the tune command to the ``cxr-tf`` group."""
    group.add_command(tune)
