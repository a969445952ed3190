"""The crosswalk between vocabularies (``cxr_tf/vocab/crosswalk.toml``): which output of a model trained
on one dataset answers which label of another, for cross-dataset evaluation (no TensorFlow here)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.core.settings import read_toml

PATH = Path(__file__).with_name("crosswalk.toml")
MATCHES = ("same name", "exact", "approximate")


@dataclass(frozen=True)
class Pair:
    """One scored pair: the label ``finding`` of the records, the model ``output`` that answers
    it, how they match (``same name``, ``exact`` or ``approximate``), and the concept's name."""

    finding: str
    output: str
    match: str
    concept: str = ""
    note: str = ""


@functools.lru_cache(maxsize=1)
def concepts() -> dict[str, dict]:
    """The crosswalk's concepts: name -> {"match", dataset -> finding, optional "note"}, the
    concepts of ``crosswalk.toml`` with each dataset card's ``[crosswalk]`` names; a card naming
    an unknown concept or a finding it does not have is refused, naming the card."""
    out = {name: dict(c) for name, c in read_toml(PATH, "crosswalk")["concepts"].items()}
    for dataset in cards.available("datasets"):
        card = cards.dataset_card(dataset)
        for concept, finding in card.get("crosswalk", {}).items():
            where = cards.card_path("datasets", dataset)
            if concept not in out:
                raise CxrDataError(where, f"[crosswalk] names {concept!r}, not a concept of {PATH.name}: "
                                          f"{', '.join(out)}")
            if finding not in card["findings"]:
                raise CxrDataError(where, f"[crosswalk] {concept} = {finding!r} is not one of its findings")
            out[concept][dataset] = finding
    return out


def pairs(outputs: Sequence[str], findings: Sequence[str], approximate: bool = False) -> list[Pair]:
    """The records' ``findings`` a model with ``outputs`` can be scored on, in the records' order:
    the same name first, else a concept naming both (approximate ones only when asked)."""
    out = []
    for finding in findings:
        if finding in outputs:
            out.append(Pair(finding, finding, "same name"))
            continue
        for name, c in concepts().items():
            if c["match"] == "approximate" and not approximate:
                continue
            names = {v for k, v in c.items() if k not in ("match", "note")}
            hits = [o for o in outputs if o in names]
            if finding in names and hits:
                out.append(Pair(finding, hits[0], c["match"], name, c.get("note", "")))
                break
    return out


def require(outputs: Sequence[str], findings: Sequence[str], approximate: bool = False) -> list[Pair]:
    """:func:`pairs`, refusing when nothing is shared."""
    found = pairs(outputs, findings, approximate)
    if not found:
        raise CxrConfigError(f"the model's outputs {list(outputs)} share no finding with the records' labels "
                             f"{list(findings)} (see {PATH.name})", key="records")
    return found


def union(vocabularies: Mapping[str, Sequence[str]], approximate: bool = False
          ) -> tuple[list[str], dict[str, dict[str, str]], list[Pair]]:
    """One label set for several datasets (``vocabularies``: dataset -> its findings, in the order
    they are merged): the union of the findings, a finding of a later dataset joining an earlier
    one's when the name is the same or a concept names both (approximate concepts only when
    asked). Returns (the union's findings, dataset -> {its finding: union finding}, the joins made
    through the crosswalk). Two findings of one dataset never join each other."""
    findings: list[str] = []
    owners: dict[str, set] = {}
    mapping: dict[str, dict[str, str]] = {}
    joins: list[Pair] = []
    for dataset, names in vocabularies.items():
        mapping[dataset] = {}
        for finding in names:
            target, pair = None, None
            if finding in owners and dataset not in owners[finding]:
                target = finding
            else:
                for name, c in concepts().items():
                    if (c["match"] == "approximate" and not approximate) or c.get(dataset) != finding:
                        continue
                    hits = [f for f in findings if dataset not in owners[f]
                            and any(c.get(d) == f for d in owners[f])]
                    if hits:
                        target, pair = hits[0], Pair(finding, hits[0], c["match"], name, c.get("note", ""))
                        break
            if target is None:
                target = finding if finding not in owners else f"{finding} ({dataset})"
                findings.append(target)
                owners[target] = set()
            owners[target].add(dataset)
            mapping[dataset][finding] = target
            if pair:
                joins.append(pair)
    return findings, mapping, joins
