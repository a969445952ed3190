"""The coordinator of a federation: a Flower ``ServerApp`` running FedAvg or FedProx over the
sites for the plan's rounds.

Each round the strategy sends the global weights to every site, averages the returned weights
weighted by each site's ``num-examples`` (FedAvg; FedProx also announces ``proximal-mu``), and
asks the sites to score the new global model on their own validation splits. The coordinator
then scores it itself on the plan's evaluation sets (held-out records it may read; in a
simulation, the pooled validation split). Every round adds a row to ``rounds.csv`` (rewritten
atomically) and scalars to TensorBoard (``logs/federated``); the final global model is
``model.keras``. A round where any site failed stops the run with the site's reason: averaging
over the sites that happened to answer would change the experiment silently.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrError
from cxr_tf.federated.client import load_weights, weights_record
from cxr_tf.federated.plan import Plan

log = logging.getLogger(__name__)

ROUNDS_CSV = "rounds.csv"
MODEL = "model.keras"


class SiteFailure(CxrError, RuntimeError):
    """A site answered a round with an error (the command line prints it as one line)."""


def scorer(model, cfg, records, split: str = "val", loss=None):
    """A function scoring ``model``'s current weights on one split of ``records``: returns
    ``{"val_loss", "val_auroc_mean", "val_auroc_<finding>"...}`` as ValidationMetrics computes
    them (the number ``cxr-tf evaluate`` reports)."""
    from cxr_tf.training.callbacks import ValidationMetrics
    from cxr_tf.pipeline import make_dataset
    from cxr_tf.training.session import split_targets

    ds = make_dataset(records.path, split, training=False, image_size=cfg.image_size, uncertain=cfg.uncertain,
                      blank=cfg.blank, findings=cfg.findings, batch_size=cfg.batch_size).map(lambda x, y: x)
    vm = ValidationMetrics(ds, split_targets(records, split, cfg), split_targets(records, split, cfg, True),
                           cfg.findings, loss or model.loss, cfg.batch_size)
    vm.set_model(model)
    return vm.evaluate


def global_model(plan: Plan):
    """The coordinator's compiled model and its evaluation scorers (name -> scorer)."""
    from cxr_tf.records.reader import RecordsDir
    from cxr_tf.training.session import Session

    sets = plan.evaluation
    if sets:
        first = plan.config(sets[0])
        session = Session(first, RecordsDir(first.records), check=False)
    else:   # a deployed coordinator without held-out records: it only averages, never scores
        from cxr_tf.training.config import TrainConfig
        first = TrainConfig(**plan.train).resolved()
        if first.loss == "weighted_bce":   # its weights need a training split; the model is the same
            first.loss = "bce"
        session = Session(first, records=False)
    model = session.model()
    scorers = {}
    for s in sets:
        cfg = plan.config(s)
        scorers[s.name] = scorer(model, cfg, RecordsDir(cfg.records))
    return model, scorers


def _strategy(plan: Plan, n_sites: int, history: dict):
    """FedAvg or FedProx over all ``n_sites`` every round, recording the aggregated site metrics
    into ``history`` and refusing a round in which a site failed."""
    from flwr.serverapp.strategy import FedAvg, FedProx

    base = FedProx if plan.strategy == "fedprox" else FedAvg

    def _checked(replies):
        replies = list(replies)
        failed = [m for m in replies if m.has_error()]
        if failed:
            reasons = "; ".join(f"node {m.metadata.src_node_id}: {m.error.reason}" for m in failed)
            raise SiteFailure(f"{len(failed)} of {len(replies)} site(s) failed: {reasons}")
        return replies

    class Recording(base):
        """The strategy, recording aggregated site metrics and refusing failed rounds."""

        def aggregate_train(self, server_round, replies):
            """Weighted mean of the weights (FedAvg), after checking every site answered."""
            arrays, metrics = super().aggregate_train(server_round, _checked(replies))
            history.setdefault(server_round, {}).update(
                {f"sites_{k}": float(v) for k, v in (metrics or {}).items() if k != "num-examples"})
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            """Weighted mean of the sites' validation metrics."""
            metrics = super().aggregate_evaluate(server_round, _checked(replies))
            history.setdefault(server_round, {}).update(
                {f"sites_{k}": float(v) for k, v in (metrics or {}).items() if k != "num-examples"})
            return metrics

    kwargs = dict(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n_sites, min_evaluate_nodes=n_sites,
                  min_available_nodes=n_sites)
    if plan.strategy == "fedprox":
        kwargs["proximal_mu"] = plan.mu
    return Recording(**kwargs)


class RoundLog:
    """``rounds.csv`` and TensorBoard scalars, one row per round (round 0: the initial model)."""

    def __init__(self, out: Path, local_epochs: int, tag: str = "federated"):
        self.out, self.local_epochs, self.rows = out, local_epochs, []
        self.t0 = time.perf_counter()
        self.writer = None
        try:
            import tensorflow as tf
            self.writer = tf.summary.create_file_writer(str(out / "logs" / tag))
        except Exception as exc:  # noqa: BLE001  (TensorBoard is a view, never a reason to stop)
            log.warning("no TensorBoard logs: %s", exc)

    def add(self, server_round: int, values: dict) -> None:
        """Record one round and rewrite the CSV."""
        import pandas as pd

        row = {"round": server_round, "epochs": server_round * self.local_epochs,
               "seconds": round(time.perf_counter() - self.t0, 2), **values}
        self.rows.append(row)
        atomic.write_csv(self.out / ROUNDS_CSV, pd.DataFrame(self.rows))
        if self.writer is not None:
            import tensorflow as tf
            with self.writer.as_default():
                for k, v in values.items():
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        tf.summary.scalar(k, v, step=row["epochs"])
            self.writer.flush()


def run_rounds(plan: Plan, grid, n_sites: int) -> dict:
    """The coordinator's whole run on a Flower ``Grid``; returns the final central metrics."""
    from flwr.app import ConfigRecord, MetricRecord

    from cxr_tf.models import contract_model, save_model

    out = Path(plan.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "plan.json", plan.to_json() + "\n")
    model, scorers = global_model(plan)
    history: dict = {}
    rounds = RoundLog(out, plan.local_epochs)
    final: dict = {}

    def evaluate_fn(server_round, arrays):
        load_weights(model, arrays)
        values = dict(history.get(server_round, {}))
        scores = {name: score() for name, score in scorers.items()}
        for name, s in scores.items():
            values[f"val_auroc_mean_{name}"] = s["val_auroc_mean"]
            values[f"val_loss_{name}"] = s["val_loss"]
        if scores:
            values["val_auroc_mean"] = float(np.nanmean([s["val_auroc_mean"] for s in scores.values()]))
            values["val_loss"] = float(np.mean([s["val_loss"] for s in scores.values()]))
        rounds.add(server_round, values)
        log.info("round %d: %s", server_round, {k: round(v, 4) for k, v in values.items()
                                                  if isinstance(v, float)})
        final.clear()
        final.update(values)
        return MetricRecord({k: v for k, v in values.items() if math.isfinite(v)})

    strategy = _strategy(plan, n_sites, history)
    result = strategy.start(grid=grid, initial_arrays=weights_record(model), num_rounds=plan.rounds,
                            train_config=ConfigRecord({"local-epochs": plan.local_epochs}),
                            evaluate_fn=evaluate_fn)
    load_weights(model, result.arrays)
    save_model(contract_model(model), out / MODEL)
    return final


def make_server_app(plan: Plan | None = None, sites: int | None = None):
    """The ServerApp: with ``plan`` (a simulation) it runs that plan over ``sites`` nodes;
    deployed, the plan comes from the run config's ``plan`` (JSON) and the number of sites from
    its ``sites`` key."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        """Run the plan's rounds on the grid."""
        p = plan if plan is not None else Plan.from_json(str(context.run_config["plan"]))
        n = sites if sites is not None else int(context.run_config.get("sites", len(p.sites)))
        run_rounds(p, grid, n)

    return app

