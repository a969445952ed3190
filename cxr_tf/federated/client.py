"""The site side of a federation: a Flower ``ClientApp`` that trains the shared model on the site's
own records and answers with the new weights and a few scalar metrics, nothing else.

- ``train`` messages carry the global weights and ``local-epochs`` (and, under FedProx,
  ``proximal-mu``). The site loads the weights, resets its optimizer, trains the local epochs
  with the loss plus (mu/2)·‖w − w_global‖² over the trainable weights (FedProx's proximal
  term, which the server only announces), and replies ``arrays`` + ``metrics``
  (``num-examples``, the FedAvg weight, and ``train_loss``).
- ``evaluate`` messages carry the global weights; the site scores them on its validation split
  and replies ``num-examples``, ``val_loss`` and ``val_auroc_mean``.

:func:`audit_mod` wraps every reply: it refuses (the site sends an error instead) any record other
than the weights it received back and the allowed scalar metrics, so no image, label array or
identifier can leave a site by mistake.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from cxr_tf.federated.plan import Plan, Site, site_from_node_config

log = logging.getLogger(__name__)

ARRAYS, METRICS, CONFIG = "arrays", "metrics", "config"
ALLOWED_METRICS = {"train": {"num-examples", "train_loss"},
                   "evaluate": {"num-examples", "val_loss", "val_auroc_mean"}}


class AuditError(RuntimeError):
    """A reply would carry something other than weights and the allowed metrics."""


def weight_names(model) -> list[str]:
    """The names the weights travel under: each variable's path (unique in a model)."""
    names = [v.path for v in model.weights]
    if len(set(names)) != len(names):
        raise ValueError("the model has two weights with the same path")
    return names


def weights_record(model):
    """The model's weights (trainable and not, e.g. batch-norm statistics) as an ArrayRecord."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord(array_dict={n: Array(np.asarray(v.numpy())) for n, v in
                                   zip(weight_names(model), model.weights)})


def load_weights(model, record) -> None:
    """Set the model's weights from an ArrayRecord of :func:`weights_record`'s names and shapes."""
    names = weight_names(model)
    if list(record.keys()) != names:
        missing, extra = sorted(set(names) - set(record.keys())), sorted(set(record.keys()) - set(names))
        raise ValueError(f"the weights do not fit this model (missing {missing[:3]}, unexpected {extra[:3]})")
    for v, name in zip(model.weights, names):
        array = record[name].numpy()
        if tuple(array.shape) != tuple(v.shape):
            raise ValueError(f"weight {name}: shape {array.shape}, the model has {tuple(v.shape)}")
        v.assign(array)


def proximal_model(inner):
    """A Keras model sharing ``inner``'s layers whose training loss adds FedProx's proximal term
    (mu/2)·Σ‖w − w_anchor‖² over ``inner``'s trainable weights; ``set_anchor(mu)`` takes the
    current weights as the anchor (the global model of the round)."""
    import keras
    from keras import ops

    class Proximal(keras.Model):
        """``inner`` with FedProx's proximal term in its training loss."""

        def __init__(self):
            super().__init__(name="proximal")
            self.inner = inner
            self.mu = self.add_weight(shape=(), initializer="zeros", trainable=False, name="mu")
            self.anchor = [self.add_weight(shape=w.shape, initializer="zeros", trainable=False,
                                           name=f"anchor_{i}") for i, w in enumerate(inner.trainable_weights)]

        def call(self, x, training=False):
            """The inner model's output."""
            return self.inner(x, training=training)

        def proximal_term(self):
            """(mu/2)·Σ‖w − anchor‖² over the inner trainable weights."""
            sq = [ops.sum(ops.square(w - a)) for w, a in zip(self.inner.trainable_weights, self.anchor)]
            return 0.5 * self.mu * ops.sum(ops.stack(sq))

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            """The compiled loss plus the proximal term."""
            loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
            return loss + self.proximal_term()

        def set_anchor(self, mu: float):
            """Take the current weights as the anchor, with weight ``mu``."""
            self.mu.assign(float(mu))
            for w, a in zip(self.inner.trainable_weights, self.anchor):
                a.assign(w)

    return Proximal()


def reset_optimizer(optimizer) -> None:
    """A fresh optimizer state for a new round (step count and moments zero), keeping its
    learning rate (also one of its variables)."""
    keep = getattr(optimizer, "_learning_rate", None)
    for v in optimizer.variables:
        if v is not keep:
            v.assign(np.zeros(v.shape, dtype=v.dtype))


class SiteTrainer:
    """One site's model, datasets and targets, built once per process and reused every round."""

    def __init__(self, plan: Plan, site: Site):
        from cxr_tf.training.callbacks import ValidationMetrics
        from cxr_tf.training.session import Session

        self.plan, self.site = plan, site
        self.session = Session(plan.config(site))
        self.cfg, self.records = self.session.cfg, self.session.records
        # compiled once: the proximal wrapper carries the loss (also what scoring uses) and the
        # optimizer; the inner model it wraps is never compiled itself (Keras' default jit choice,
        # as the site always had)
        self.inner = self.session.model(compile=False)
        self.model = self.session.compile(proximal_model(self.inner), self.inner.trainable_variables,
                                          jit_compile="auto")
        self.n_train = int(self.records.splits["train"]["images"])
        self._val = None
        self._metrics_cls = ValidationMetrics

    def _datasets(self, server_round: int):
        return self.session.datasets(seed=self.cfg.seed + 1000 * server_round)

    def train(self, record, local_epochs: int, mu: float, server_round: int) -> tuple[object, dict]:
        """Local training from the global weights in ``record``; returns (weights, metrics)."""
        load_weights(self.inner, record)
        reset_optimizer(self.model.optimizer)
        self.model.set_anchor(mu)
        train_ds, _, _ = self._datasets(server_round)
        history = self.model.fit(train_ds, epochs=local_epochs, verbose=0, shuffle=False)
        loss = float(history.history["loss"][-1])
        log.info("site %s round %d: %d local epoch(s), loss %.4f (mu %g)", self.site.name, server_round,
                 local_epochs, loss, mu)
        return weights_record(self.inner), {"num-examples": self.n_train, "train_loss": loss}

    def evaluate(self, record) -> dict:
        """The global weights in ``record`` scored on the site's validation split."""
        load_weights(self.inner, record)
        if self._val is None:
            _, val_ds, targets = self._datasets(0)
            self._val = self._metrics_cls(val_ds, targets.loss, targets.metric, self.cfg.findings, self.model.loss,
                                          self.cfg.batch_size)
            self._val.set_model(self.inner)
        out = self._val.evaluate()
        auroc = out["val_auroc_mean"]
        return {"num-examples": int(self.records.splits["val"]["images"]), "val_loss": float(out["val_loss"]),
                "val_auroc_mean": float(auroc) if math.isfinite(auroc) else 0.5}


_TRAINERS: dict = {}
KEEP_TRAINERS = 8   # a simulation worker serves many sites in turn: keep their built models


def _trainer(plan: Plan, site: Site) -> SiteTrainer:
    """This process's trainer for ``site`` (building a model and tracing its step costs seconds
    to minutes, so it is built once; the least recently used beyond KEEP_TRAINERS is dropped)."""
    key = (plan.to_json(), site.name, site.records)
    trainer = _TRAINERS.pop(key, None) or SiteTrainer(plan, site)
    _TRAINERS[key] = trainer
    while len(_TRAINERS) > KEEP_TRAINERS:
        _TRAINERS.pop(next(iter(_TRAINERS)))
    return trainer


def _site_and_plan(plan: Plan | None, context) -> tuple[Plan, Site]:
    """The site this ClientApp is: in a simulation the plan's site numbered by the node's
    ``partition-id``; deployed, the site of the SuperNode's ``--node-config`` and the plan the
    run config carries."""
    if plan is not None and "partition-id" in context.node_config:
        return plan, plan.sites[int(context.node_config["partition-id"])]
    if plan is None:
        plan = Plan.from_json(str(context.run_config["plan"]))
    return plan, site_from_node_config(context.node_config)


def audit_mod(msg, context, call_next):
    """A Flower client mod checking every reply before it leaves the site: only an ``arrays``
    record with exactly the weight names and shapes that arrived, a ``metrics`` record of the
    allowed scalar keys, nothing else (no config, no strings, no lists)."""
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    kind = msg.metadata.message_type.split(".")[0]
    content = reply.content
    allowed_records = {ARRAYS, METRICS} if kind == "train" else {METRICS}
    if set(content.keys()) - allowed_records or content.config_records:
        raise AuditError(f"a {kind} reply may carry only {sorted(allowed_records)}, not {sorted(content.keys())}")
    if kind == "train":
        sent, back = msg.content[ARRAYS], content[ARRAYS]
        if list(back.keys()) != list(sent.keys()) or any(
                tuple(back[k].shape) != tuple(sent[k].shape) or back[k].dtype != sent[k].dtype for k in sent.keys()):
            raise AuditError("the reply's arrays are not the model weights that were sent")
    metrics = content[METRICS]
    extra = set(metrics.keys()) - ALLOWED_METRICS.get(kind, set())
    if extra:
        raise AuditError(f"metrics {sorted(extra)} are not allowed to leave a site")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AuditError(f"metric {key} must be one number, got {type(value).__name__}")
    return reply


def make_client_app(plan: Plan | None = None, mods: list | None = None):
    """The ClientApp: with ``plan`` (a simulation) every node is one of its sites; without, the
    run config's plan and the SuperNode's ``--node-config`` say what to train. ``mods`` run
    outside :func:`audit_mod` (a test's recorder sees what really leaves)."""
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=[*(mods or []), audit_mod])

    @app.train()
    def train(msg: Message, context) -> Message:
        """Local epochs from the global weights; reply the weights and training metrics."""
        p, site = _site_and_plan(plan, context)
        config = msg.content[CONFIG]
        arrays, metrics = _trainer(p, site).train(
            msg.content[ARRAYS], int(config.get("local-epochs", p.local_epochs)),
            float(config.get("proximal-mu", 0.0)), int(config.get("server-round", 0)))
        return Message(content=RecordDict({ARRAYS: arrays, METRICS: MetricRecord(metrics)}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context) -> Message:
        """Score the global weights on the site's validation split."""
        p, site = _site_and_plan(plan, context)
        metrics = _trainer(p, site).evaluate(msg.content[ARRAYS])
        return Message(content=RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)

    return app
