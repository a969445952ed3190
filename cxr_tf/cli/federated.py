"""Federated training: ``cxr-tf federated`` (a local simulation beside centralized training) and
``cxr-tf federated-app`` (the Flower App for a real SuperLink/SuperNode deployment)."""

from __future__ import annotations

import click

from cxr_tf.cli.common import of, train_settings


def _plan_options(f):
    for opt in reversed([
        click.option("--strategy", default="fedavg", show_default=True, type=of("cxr_tf.federated", "STRATEGIES"),
                     help="How the sites' updates are combined (fedavg: weighted average; fedprox: "
                          "with a proximal term)."),
        click.option("--mu", default=None, type=float, help="FedProx's proximal weight [default: 0.01 with fedprox]."),
        click.option("--rounds", default=5, show_default=True, help="Federated rounds."),
        click.option("--local-epochs", default=1, show_default=True, help="Epochs each site trains per round."),
        click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
                     help="Shared training settings (TOML, TrainConfig keys; e.g. a tune best.toml)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any TrainConfig field. Repeatable."),
    ]):
        f = opt(f)
    return f


def _mu(strategy: str, mu):
    return (0.01 if strategy == "fedprox" else 0.0) if mu is None else mu


@click.command("federated")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the simulation: sites/, federated/ (rounds.csv, model.keras), centralized/, "
                   "summary.json and report.md.")
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Records to split into sites by patient.")
@click.option("--sites", default=3, show_default=True, help="Number of sites (with --records).")
@click.option("--site-split", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CSV of site and patient (or image_id): the sites, instead of --sites/--skew.")
@click.option("--site-records", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="One site per records directory (e.g. NIH and CheXpert), on the findings they share. Repeatable.")
@click.option("--skew", default="none", show_default=True, type=of("cxr_tf.records.partition", "SKEWS"),
              help="Non-IID split: each patient's primary finding (label) or view dealt by Dirichlet(alpha).")
@click.option("--alpha", default=0.5, show_default=True, help="Dirichlet concentration of the skew (small: strong).")
@_plan_options
@click.option("--no-compare", is_flag=True, help="Skip the centralized run on the pooled data.")
@click.option("--demo", is_flag=True, help="A phantom NIH dataset in 3 sites, tiny model (a few minutes on a CPU).")
def federated(out_dir, records, sites, site_split, site_records, skew, alpha, strategy, mu, rounds, local_epochs,
              config_file, sets, no_compare, demo):
    """Simulate federated training across sites on this machine (Flower + ray), beside centralized
    training on the same data for the same total epochs; per-round validation AUROC goes to
    OUT/federated/rounds.csv and TensorBoard (OUT/federated/logs).

    Example: cxr-tf federated --records runs/nih_records --sites 3 --rounds 5 --out runs/federated"""
    from cxr_tf.federated.simulate import simulate

    res = simulate(out_dir, records=records, site_records=list(site_records) or None, sites=sites,
                   site_split=site_split, skew=skew, alpha=alpha, strategy=strategy, mu=_mu(strategy, mu),
                   rounds=rounds, local_epochs=local_epochs, train=train_settings(config_file=config_file, sets=sets),
                   compare=not no_compare, demo=demo)
    fed = res["federated"]
    click.echo(f"federated ({strategy}, {len(res['sites'])} sites, {rounds} rounds): val AUROC "
               f"{fed['val_auroc_mean']:.4f}, test {_scores(fed['test_auroc_mean'])}")
    if "centralized" in res:
        c = res["centralized"]
        click.echo(f"centralized, same epochs: val AUROC {c['val_auroc_mean']:.4f}, "
                   f"test {_scores(c['test_auroc_mean'])}")
    click.echo(f"{res['seconds']:.0f} s; report: {out_dir}/report.md")


def _scores(d: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in d.items()) or "-"


@click.command("federated-app")
@click.argument("app_dir", type=click.Path(file_okay=False))
@click.option("--sites", required=True, type=int, help="Hospitals (SuperNodes) that must join every round.")
@click.option("--out", "out_dir", required=True, help="The coordinator's output folder (rounds.csv, model.keras).")
@click.option("--val-records", default=None, help="Held-out records the coordinator scores each round (optional).")
@_plan_options
def federated_app(app_dir, sites, out_dir, val_records, strategy, mu, rounds, local_epochs, config_file, sets):
    """Write the Flower App for a real deployment; run it with `flwr run APP_DIR SUPERLINK`.

    Example: cxr-tf federated-app runs/flower_app --sites 3 --out runs/coordinator"""
    from cxr_tf.federated.deploy import write_app
    from cxr_tf.federated.plan import Plan

    evaluation = [{"name": "heldout", "records": val_records}] if val_records else []
    plan = Plan(train=train_settings(config_file=config_file, sets=sets), evaluation=evaluation, rounds=rounds,
                local_epochs=local_epochs, strategy=strategy, mu=_mu(strategy, mu), out=out_dir)
    write_app(app_dir, plan, sites)
    click.echo(f"wrote {app_dir}: run it with `flwr run {app_dir} <superlink>` (see the README)")


def register(group: click.Group) -> None:
    """Add the federated commands to the ``cxr-tf`` group."""
    group.add_command(federated)
    group.add_command(federated_app)
