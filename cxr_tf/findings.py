"""Finding vocabularies, label states and uncertainty policies.

Label states in a manifest (one float column per finding):

* ``1.0`` positive, ``0.0`` negative;
* ``-1.0`` uncertain (CheXpert, MIMIC-CXR);
* blank (``NaN``) not mentioned (CheXpert, MIMIC-CXR).

ChestX-ray14 has only 1 and 0. A *policy* turns states into training targets; entries a loss must
ignore (CheXpert's U-Ignore) become ``IGNORE`` (-1), which the masked losses skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_tf import cards
from cxr_tf.errors import CxrConfigError, CxrDataError

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
IGNORE = -1.0
UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")
BLANK_POLICIES = ("zeros", "ignore")


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


def check_policies(uncertain: str, blank: str) -> None:
    """Refuse unknown uncertainty or blank policy names."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise CxrConfigError(f"unknown policy {uncertain!r}", key="uncertain",
                             choices=UNCERTAIN_POLICIES)
    if blank not in BLANK_POLICIES:
        raise CxrConfigError(f"unknown policy {blank!r}", key="blank", choices=BLANK_POLICIES)


def apply_policy(labels: np.ndarray, uncertain: str = "ignore", blank: str = "zeros") -> np.ndarray:
    """Map label states to targets: uncertain (-1) and blank (NaN) per the named policies.

    ``uncertain``: ``"ignore"`` (U-Ignore, masked), ``"zeros"`` (U-Zeros), ``"ones"`` (U-Ones).
    ``blank``: ``"zeros"`` (the CheXpert paper's choice) or ``"ignore"``.
    """
    check_policies(uncertain, blank)
    out = np.array(labels, dtype=np.float32, copy=True)
    unc = out == UNCERTAIN
    out[unc] = {"ignore": IGNORE, "zeros": 0.0, "ones": 1.0}[uncertain]
    out[np.isnan(out)] = IGNORE if blank == "ignore" else 0.0
    return out
