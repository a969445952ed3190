"""The rule engine of ``cxr-tf label``: mentions, their negation and uncertainty in scope, and the
CheXpert labeler's aggregation, on compiled regular expressions (plain Python, no model).

A report (the chosen sections, :mod:`cxr_tf.label.sections`) is cut into sentences and each
sentence into the stretch a trigger can reach. A mention of an observation (the vocabulary's
``mentions``, minus its ``exclude`` look-alikes) is **uncertain** when an uncertainty trigger
governs it, else **negative** when a negation governs it, else **positive**; a trigger governs a
mention when it is in the same clause (no terminator between them), before it (``*_pre``) or after
it (``*_post``), and at most ``window`` words away; a pseudo-negation ("no change in") is not a
trigger. ``negative`` phrases are negative mentions by themselves, ``normal`` ones count only when
negated or uncertain ("heart size is normal", "heart size at the upper limits of normal"). Per
report, positive beats uncertain beats negative; No Finding is 1 when nothing but the ignored
observations is positive or uncertain.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib

from cxr_tf.errors import CxrConfigError

HERE = Path(__file__).parent
VOCABULARIES = ("chexpert", "chestxray14")
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9_(\[])|\n\s*\n|\s(?=\d{1,2}[.)]\s)|(?<=[.!?])\s*$")
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_DEID = re.compile(r"_{2,}|\bx{3,}\b", re.I)


def _union(patterns) -> re.Pattern | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


@dataclass(frozen=True)
class Observation:
    """One observation's compiled phrase lists."""

    name: str
    mentions: re.Pattern | None
    negative: re.Pattern | None
    normal: re.Pattern | None
    exclude: re.Pattern | None


class Rules:
    """The compiled context rules (``rules.toml``)."""

    def __init__(self, data: dict):
        self.window = int(data["window"])
        self.kinds = {k: _union(data[k]) for k in ("uncertain_pre", "uncertain_post", "negation_pre", "negation_post")}
        self.pseudo = _union(data["pseudo"])
        self.terminators = _union(data["terminators"])
        self.post_stops = _union([re.escape(x) for x in data.get("post_stops", [])])


class Vocabulary:
    """A labeler vocabulary (``<name>.toml``): observations in output order, with their phrases."""

    def __init__(self, data: dict):
        self.name = data["name"]
        self.order = list(data["order"])
        self.no_finding = data.get("no_finding")
        self.no_finding_ignores = set(data.get("no_finding_ignores", []))
        self.implies_uncertain = {k: _union(v) for k, v in data.get("implies_uncertain", {}).items()}
        self.observations = [Observation(name, _union(o.get("mentions", [])), _union(o.get("negative", [])),
                                         _union(o.get("normal", [])), _union(o.get("exclude", [])))
                             for name, o in data["observations"].items()]
        unknown = [o.name for o in self.observations if o.name not in self.order]
        if unknown:
            raise CxrConfigError(f"vocabulary {self.name}: observations {unknown} are not in its order")


@functools.lru_cache(maxsize=None)
def rules() -> Rules:
    """The context rules shipped with the package."""
    with open(HERE / "rules.toml", "rb") as fh:
        return Rules(tomllib.load(fh))


@functools.lru_cache(maxsize=None)
def vocabulary(name: str) -> Vocabulary:
    """A vocabulary shipped with the package (:data:`VOCABULARIES`)."""
    if name not in VOCABULARIES:
        raise CxrConfigError(f"unknown vocabulary {name!r}", key="vocabulary", choices=VOCABULARIES)
    with open(HERE / f"{name}.toml", "rb") as fh:
        return Vocabulary(tomllib.load(fh))


def sentences(text: str) -> list[str]:
    """Sentences (and numbered items) of a text, lower-cased with whitespace collapsed; the
    de-identification tokens (``___``, ``XXXX``) become ``___``."""
    out = []
    for part in _SENTENCE.split(text):
        if part and part.strip():
            s = _DEID.sub("___", _SPACE.sub(" ", part).strip().lower())
            if s:
                out.append(s)
    return out


def _spans(pattern: re.Pattern | None, text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)] if pattern else []


class _Sentence:
    """Triggers and terminators of one sentence, found once for all its mentions."""

    def __init__(self, text: str, r: Rules):
        self.text = text
        self.rules = r
        pseudo = _spans(r.pseudo, text)
        self.triggers = {}
        for kind, pattern in r.kinds.items():
            spans = _spans(pattern, text)
            if not kind.startswith("uncertain"):
                spans = [(a, b) for a, b in spans if not any(pa <= a and b <= pb for pa, pb in pseudo)]
            self.triggers[kind] = spans
        self.stops = [a for a, _ in _spans(r.terminators, text)]
        self.post_stops = [a for a, _ in _spans(r.post_stops, text)]

    def _reach(self, a: int, b: int, post: bool = False) -> bool:
        """Whether a trigger at one end of [a, b) reaches the other end."""
        if any(a <= s < b for s in self.stops) or (post and any(a <= s < b for s in self.post_stops)):
            return False
        return len(_WORD.findall(self.text[a:b])) <= self.rules.window

    def governed(self, kind: str, start: int, end: int) -> bool:
        """Whether a ``kind`` trigger (``uncertain`` or ``negation``) governs the mention [start, end)."""
        for a, b in self.triggers[f"{kind}_pre"]:
            if b <= start and self._reach(b, start):
                return True
        for a, b in self.triggers[f"{kind}_post"]:
            if a >= end and self._reach(end, a, post=True):
                return True
        return False

    def state(self, start: int, end: int) -> float:
        """The state of a mention at [start, end)."""
        if self.governed("uncertain", start, end):
            return UNCERTAIN
        if self.governed("negation", start, end):
            return NEGATIVE
        return POSITIVE


def _merge(old, new):
    """Positive beats uncertain beats negative (the CheXpert labeler's aggregation)."""
    rank = {None: 0, NEGATIVE: 1, UNCERTAIN: 2, POSITIVE: 3}
    return new if rank[new] > rank[old] else old


def label_text(text: str, vocab: Vocabulary, r: Rules | None = None) -> dict:
    """One report's (already sectioned) text -> {observation: 1.0 / 0.0 / -1.0}; unmentioned
    observations are absent (blank), No Finding included when it applies."""
    r = r or rules()
    found: dict[str, float] = {}
    implied: dict[str, float] = {}
    if not text.strip():
        return found
    low = _SPACE.sub(" ", text.lower())
    present = [o for o in vocab.observations
               if any(p is not None and p.search(low) for p in (o.mentions, o.negative, o.normal))]
    implies = {k: p for k, p in vocab.implies_uncertain.items() if p.search(low)}
    for sentence in sentences(text) if present or implies else ():
        ctx = None
        for obs in present:
            excluded = _spans(obs.exclude, sentence)
            for pattern, kind in ((obs.mentions, "mention"), (obs.negative, "negative"), (obs.normal, "normal")):
                for a, b in _spans(pattern, sentence):
                    if any(ea <= a < eb or ea < b <= eb for ea, eb in excluded):
                        continue
                    if kind == "negative":
                        found[obs.name] = _merge(found.get(obs.name), NEGATIVE)
                        continue
                    ctx = ctx or _Sentence(sentence, r)
                    state = ctx.state(a, b)
                    if kind == "normal" and state == POSITIVE:     # "heart size" alone says nothing
                        continue
                    found[obs.name] = _merge(found.get(obs.name), state)
        for name, pattern in implies.items():
            for a, b in _spans(pattern, sentence):
                ctx = ctx or _Sentence(sentence, r)
                if ctx.state(a, b) != NEGATIVE:
                    implied[name] = UNCERTAIN
    for name, state in implied.items():
        found.setdefault(name, state)
    if vocab.no_finding:
        found.pop(vocab.no_finding, None)
        if not any(v in (POSITIVE, UNCERTAIN) for k, v in found.items() if k not in vocab.no_finding_ignores):
            found[vocab.no_finding] = POSITIVE
    return found
