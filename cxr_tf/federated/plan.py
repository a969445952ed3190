"""What a federation trains, as plain JSON-able data that the ServerApp and every ClientApp read.

A plan holds the shared training settings (TrainConfig fields, without ``records``/``out``), the
sites (each a records directory and the names its labels have for the model's outputs), the
evaluation sets the coordinator scores the global model on, and the rounds. In a simulation the
plan is handed to both apps; in a deployment the coordinator's part comes from the Flower run
config and each site's part from its SuperNode's ``--node-config`` (see
:func:`site_from_node_config`). No TensorFlow here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cxr_tf.training.config import TrainConfig
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.federated import STRATEGIES

# Settings that are a site's own, never the federation's.
SITE_KEYS = ("records", "out", "dataset", "findings")


@dataclass
class Site:
    """One site: its records and the names of its labels, in the model's output order."""

    name: str
    records: str
    findings: list | None = None     # None: the shared config's findings
    dataset: str | None = None       # the vocabulary of those names (None: the shared one)


@dataclass
class Plan:
    """A federation: ``train`` (TrainConfig fields shared by all), ``sites``, ``evaluation`` (sets
    the coordinator scores the global model on each round), ``rounds``, ``local_epochs``,
    ``strategy`` (fedavg or fedprox) with ``mu``, ``out`` (the coordinator's output folder)."""

    train: dict
    sites: list = field(default_factory=list)
    evaluation: list = field(default_factory=list)
    rounds: int = 5
    local_epochs: int = 1
    strategy: str = "fedavg"
    mu: float = 0.0
    out: str | None = None

    def __post_init__(self):
        self.sites = [s if isinstance(s, Site) else Site(**s) for s in self.sites]
        self.evaluation = [s if isinstance(s, Site) else Site(**s) for s in self.evaluation]
        bad = sorted(set(self.train) & set(SITE_KEYS))
        if bad:
            raise CxrConfigError(f"{', '.join(bad)} belong to a site, not to the shared settings", key="train")
        TrainConfig.from_mapping(self.train, where="federated settings")
        if self.strategy not in STRATEGIES:
            raise CxrConfigError(f"unknown strategy {self.strategy!r}", key="strategy", choices=STRATEGIES)
        if self.strategy == "fedprox" and not self.mu > 0:
            raise CxrConfigError(f"FedProx needs a positive mu, got {self.mu}", key="mu")
        if self.strategy == "fedavg" and self.mu:
            raise CxrConfigError("mu is FedProx's; FedAvg has no proximal term", key="mu", fix="--strategy fedprox")
        for key in ("rounds", "local_epochs"):
            if getattr(self, key) < 1:
                raise CxrConfigError(f"must be at least 1, got {getattr(self, key)}", key=key)

    def config(self, site: Site, **extra) -> TrainConfig:
        """The resolved TrainConfig a site trains (or an evaluation set is scored) with."""
        values = {**self.train, "records": site.records, **extra}
        if site.findings is not None:
            values["findings"] = list(site.findings)
        if site.dataset is not None:
            values["dataset"] = site.dataset
        return TrainConfig(**values).resolved()

    def to_json(self) -> str:
        """The plan as JSON (what ``plan.json`` and the run config's ``plan`` hold)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """The inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def site_from_node_config(node_config) -> Site:
    """A deployed site from its SuperNode's ``--node-config``: ``records`` (required), and
    optionally ``site`` (its name), ``findings`` (comma-separated) and ``dataset``."""
    if "records" not in node_config:
        raise CxrConfigError("the SuperNode's --node-config names no records directory "
                             "(start it with --node-config \"records='/path/to/records'\")", key="records")
    findings = node_config.get("findings")
    return Site(name=str(node_config.get("site", Path(str(node_config["records"])).name)),
                records=str(node_config["records"]),
                findings=[f.strip() for f in str(findings).split(",")] if findings else None,
                dataset=node_config.get("dataset") or None)
