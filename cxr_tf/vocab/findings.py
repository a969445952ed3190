"""Finding vocabularies, label states and uncertainty policies.

Label states in a manifest (one float column per finding):

* ``1.0`` positive, ``0.0`` negative;
* ``-1.0`` uncertain (CheXpert, MIMIC-CXR);
* blank (``NaN``) not mentioned (CheXpert, MIMIC-CXR).

ChestX-ray14 has only 1 and 0. A *policy* turns states into training targets, per finding (a
name for all findings, or a mapping ``{finding: policy, "default": policy}``); entries a loss must
ignore become ``IGNORE`` (-1), which the masked losses skip. Uncertainty policies (Irvin et al.
2019; Pham et al. 2019 for the label-smoothed two):

=============== ===========================================================================
``ignore``      U-Ignore: the entry is masked out of the loss (the entry, not the image)
``zeros``       U-Zeros: uncertain -> 0
``ones``        U-Ones: uncertain -> 1
``selftrained`` U-SelfTrained: train with ``ignore``, relabel the uncertain entries with that
                model's probabilities (soft targets), retrain
``multiclass``  U-MultiClass: a 3-way softmax (negative, positive, uncertain) for the finding;
                the model still outputs one probability, p1 / (p0 + p1)
``ones_lsr``    U-Ones + label smoothing: uncertain -> uniform in [0.55, 0.85], drawn per batch
``zeros_lsr``   U-Zeros + label smoothing: uncertain -> uniform in [0, 0.3]
=============== ===========================================================================

Blank: ``zeros`` (the CheXpert paper's choice: not mentioned = negative) or ``ignore``.
Metrics are computed on certain labels only (:func:`metric_targets`): whatever a run trained
with, an uncertain entry is not ground truth and is left out of AUROC and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
IGNORE = -1.0
UNCERTAIN_CLASS = 2.0        # a multiclass finding's target for an uncertain entry
UNCERTAIN_POLICIES = ("ignore", "zeros", "ones", "selftrained", "multiclass", "ones_lsr", "zeros_lsr")
LSR_RANGES = {"ones_lsr": (0.55, 0.85), "zeros_lsr": (0.0, 0.3)}
BLANK_POLICIES = ("zeros", "ignore")
# The deterministic target of an uncertain entry under each policy (LSR: the middle of its range;
# selftrained: ignored until soft targets replace it).
_UNCERTAIN_TARGET = {"ignore": IGNORE, "zeros": 0.0, "ones": 1.0, "selftrained": IGNORE,
                     "multiclass": UNCERTAIN_CLASS, "ones_lsr": 0.7, "zeros_lsr": 0.15}


@dataclass(frozen=True)
class Vocabulary:
    """The findings of one dataset, in model-output order, with their accepted aliases."""

    dataset: str
    findings: tuple[str, ...]
    aliases: dict

    def canonical(self, name: str, where: str | None = None) -> str:
        """Return the vocabulary spelling of ``name``; raise naming ``where`` if it is unknown."""
        name = name.strip()
        if name in self.findings:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise CxrDataError(where, f"unknown {self.dataset} finding {name!r}; "
                                  f"known: {', '.join(self.findings)}")

    def index(self, name: str) -> int:
        """Position of a finding in the model's outputs."""
        return self.findings.index(self.canonical(name))

    def __len__(self) -> int:
        return len(self.findings)


def vocabulary(dataset: str, subset: str | None = None) -> Vocabulary:
    """The vocabulary of a dataset card; ``subset`` names another list in the card
    (e.g. ``"findings_chestxray8"``)."""
    card = cards.dataset_card(dataset)
    key = subset or "findings"
    if key not in card:
        raise CxrDataError(None, f"dataset card {dataset!r} has no list {key!r}")
    return Vocabulary(dataset, tuple(card[key]), dict(card.get("aliases", {})))


def parse_policies(text: str):
    """``"ones"`` -> ``"ones"``; ``"Atelectasis=ones,Edema=ones,default=ignore"`` -> a mapping."""
    if "=" not in text:
        return text.strip()
    out = {}
    for item in text.split(","):
        name, sep, policy = item.partition("=")
        if not sep:
            raise CxrConfigError(f"expected FINDING=POLICY, got {item!r}", key="uncertain")
        out[name.strip()] = policy.strip()
    return out


def policies(uncertain, findings: Sequence[str]) -> list[str]:
    """The policy of each finding, from one name or a ``{finding: policy, "default": policy}``
    mapping (findings it does not name get ``default``, else ``ignore``)."""
    if isinstance(uncertain, str):
        return [uncertain] * len(findings)
    default = uncertain.get("default", "ignore")
    return [uncertain.get(f, default) for f in findings]


def check_policies(uncertain, blank: str, findings: Sequence[str] | None = None) -> None:
    """Refuse unknown policy names, and (given ``findings``) mappings naming unknown findings."""
    names = [uncertain] if isinstance(uncertain, str) else list(uncertain.values())
    for name in names:
        if name not in UNCERTAIN_POLICIES:
            raise CxrConfigError(f"unknown policy {name!r}", key="uncertain", choices=UNCERTAIN_POLICIES)
    if isinstance(uncertain, Mapping) and findings is not None:
        unknown = sorted(set(uncertain) - set(findings) - {"default"})
        if unknown:
            raise CxrConfigError(f"policies for {unknown}, which are not among the findings {list(findings)}",
                                 key="uncertain")
    if blank not in BLANK_POLICIES:
        raise CxrConfigError(f"unknown policy {blank!r}", key="blank", choices=BLANK_POLICIES)


def train_targets(labels: np.ndarray, uncertain="ignore", blank: str = "zeros", findings=None) -> np.ndarray:
    """Label states -> training targets, per finding (``uncertain``: a name or a mapping, which
    needs ``findings``). Deterministic: label-smoothed policies give the middle of their range
    (the pipeline draws them per batch); ``multiclass`` gives :data:`UNCERTAIN_CLASS`."""
    out = np.array(labels, dtype=np.float32, copy=True)
    per = policies(uncertain, findings if findings is not None else [None] * out.shape[-1])
    check_policies(uncertain if isinstance(uncertain, str) else dict(uncertain), blank)
    unc = out == UNCERTAIN
    out = np.where(unc, np.array([_UNCERTAIN_TARGET[p] for p in per], np.float32), out)
    out[np.isnan(out)] = IGNORE if blank == "ignore" else 0.0
    return out


def metric_targets(labels: np.ndarray, blank: str = "zeros") -> np.ndarray:
    """Label states -> the binary truth metrics use: uncertain entries are left out (IGNORE),
    blank follows the blank policy."""
    return train_targets(labels, "ignore", blank)
