"""The search space of ``cxr-tf tune``: a TOML file of hyperparameters over
:class:`~cxr_tf.training.config.TrainConfig` fields, parsed and checked in pure Python (no TensorFlow,
no keras-tuner), and the small TOML writer for ``best.toml``."""

from __future__ import annotations

import json
import logging
import math
import re
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from cxr_tf.core import cards
from cxr_tf.records.phantom import Demo
from cxr_tf.training.config import TrainConfig
from cxr_tf.core.settings import read_toml
from cxr_tf.core.errors import CxrConfigError, CxrError

log = logging.getLogger(__name__)

SPACE = Path(__file__).with_name("space.toml")
SEARCHES = ("random", "grid", "bayesian")
OBJECTIVE = "val_auroc_mean"
AUGMENT = "augment"
PROJECT = "keras_tuner"
SAMPLINGS = ("linear", "log", "reverse_log")
# The same for every trial (set them in [fixed]); deterministic and mixed precision are process-wide.
NOT_SEARCHED = ("records", "out", "preset", "dataset", "findings", "strategy", "verbose", "select_by",
                "select_findings", "mixed_precision", "deterministic", "fast_start", "tb_cam_images",
                "keep_checkpoints")
_TABLES = ("fixed", "hyperparameters", "augment", "demo")
_PARAM_KEYS = ("choices", "min", "max", "step", "sampling", "default", "parent_name", "parent_values", "datasets")
_DEMO_KEYS = ("images", "patients", "synth_size", "seed", "synth", "prepare", "train", "trials", "drop",
              "hyperparameters")
# --demo without a [demo] table in the space: a small phantom and four trials
DEMO = {"images": 600, "synth_size": 96, "prepare": {"size": 64}, "trials": 4}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a Choice, or an Int/Float range."""

    name: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    default: Any = None
    integer: bool = False
    parent_name: str | None = None
    parent_values: tuple | None = None

    def declare(self, hp):
        """Register (or read) this hyperparameter on a keras-tuner ``HyperParameters``; None while
        its condition is not met."""
        cond = {"parent_name": self.parent_name, "parent_values": list(self.parent_values)} if self.parent_name else {}
        if self.choices is not None:
            return hp.Choice(self.name, list(self.choices), default=self.default, **cond)
        return (hp.Int if self.integer else hp.Float)(self.name, self.min, self.max, step=self.step,
                                                      sampling=self.sampling, default=self.default, **cond)


@dataclass
class Space:
    """A parsed search space: fixed settings, hyperparameters (parents first), the augmentation
    mapping (field -> (base, per unit)) and the demo settings (:class:`~cxr_tf.records.phantom.Demo`:
    ``extra["trials"]`` is the demo's trial count)."""

    path: str
    fixed: dict
    params: tuple
    augment: dict
    demo: Demo

    @property
    def names(self) -> list[str]:
        """The hyperparameter names, in declaration order."""
        return [p.name for p in self.params]

    def declare(self, hp) -> dict:
        """Declare every hyperparameter on ``hp``; the active values by name."""
        values = {p.name: p.declare(hp) for p in self.params}
        return {k: v for k, v in values.items() if v is not None}

    def train_values(self, values: Mapping) -> dict:
        """Hyperparameter values -> TrainConfig fields: the fixed ones, then the values, with the
        augmentation strength spelled out as the fields ``[augment]`` names."""
        out = dict(self.fixed)
        for name, v in values.items():
            out.update(augment_fields(self.augment, _clean(v)) if name == AUGMENT else {name: _clean(v)})
        return out

    def trial_config(self, values: Mapping) -> TrainConfig:
        """The (unresolved) TrainConfig of one trial's values."""
        return TrainConfig.from_mapping(self.train_values(values), where=self.path)

    def require_steps(self) -> None:
        """Grid search enumerates values: every range needs a ``step`` (or use ``choices``)."""
        missing = [f"[hyperparameters.{p.name}]" for p in self.params if p.choices is None and p.step is None]
        if missing:
            raise CxrConfigError(f"{self.path}: --search grid needs a step (or choices) for every range; "
                                 f"none for {', '.join(missing)}")

    def to_dict(self) -> dict:
        """JSON-ready (what ``tune.json`` keeps to check a rerun)."""
        return json.loads(json.dumps({"fixed": self.fixed, "params": [asdict(p) for p in self.params],
                                      "augment": self.augment}))


def augment_fields(mapping: Mapping, strength: float) -> dict:
    """The TrainConfig fields of augmentation strength ``strength``: base + strength * per unit."""
    return {field: [_clean(b + strength * p) for b, p in zip(base, per)] if isinstance(per, list)
            else _clean(base + strength * per) for field, (base, per) in mapping.items()}


def _clean(v):
    """A plain Python value (NumPy scalars unwrapped), floats rounded to 12 significant digits."""
    v = v.item() if hasattr(v, "item") else v
    return float(f"{v:.12g}") if isinstance(v, float) and math.isfinite(v) else v


def load_space(path=None, overrides: Mapping | None = None, demo: bool = False) -> Space:
    """Parse and check a search-space file (default :data:`SPACE`); ``overrides`` (TrainConfig
    fields: ``--set``, ``--records``) go over ``[fixed]``; ``demo`` applies ``[demo]``. What
    cannot be searched is refused with a :class:`CxrConfigError` naming the file and table."""
    path = Path(path) if path else SPACE
    data = read_toml(path, "search-space file")
    w = str(path)
    _table(data, w, "top-level table", _TABLES)
    fixed, hps, augment = (dict(_table(data.get(k, {}), f"{w}: [{k}]")) for k in _TABLES[:3])
    demo_table = _table(data.get("demo", {}), f"{w}: [demo]", "key", _DEMO_KEYS)
    if demo:
        fixed.update(_table(demo_table.get("train", {}), f"{w}: [demo.train]"))
        hps.update(_table(demo_table.get("hyperparameters", {}), f"{w}: [demo.hyperparameters]"))
        for name in demo_table.get("drop", []):
            if hps.pop(name, None) is None:
                raise CxrConfigError(f"{w}: [demo] drop names {name!r}, which is not a hyperparameter")
    fixed.update(overrides or {})
    base = _check_fixed(fixed, w)
    if not hps:
        raise CxrConfigError(f"{w}: no [hyperparameters.NAME] tables: nothing to search")
    augment = _parse_augment(augment, fixed, hps, w)
    params = {n: _parse_param(n, _table(t, f"{w}: [hyperparameters.{n}]", "key", _PARAM_KEYS), fixed, augment,
                              base, w) for n, t in hps.items()}
    params = _conditions({n: p for n, p in params.items() if p is not None}, hps, base, w)
    info = Demo.of({**DEMO, **demo_table, "prepare": {**DEMO["prepare"], **demo_table.get("prepare", {})}},
                   where=f"{w}: [demo]")
    return Space(w, fixed, tuple(params.values()), augment, info)


def _table(value, where: str, what: str = "", allowed=None) -> dict:
    """``value`` as a table whose keys are among ``allowed`` (when given)."""
    if not isinstance(value, dict):
        raise CxrConfigError(f"{where} must be a table, got {value!r}")
    for key in value if allowed else ():
        if key not in allowed:
            raise CxrConfigError(f"{where}: unknown {what} {key!r}; expected one of {', '.join(allowed)}")
    return value


def _check_fixed(fixed: dict, w: str) -> TrainConfig:
    """Refuse unknown or invalid fixed settings; return them resolved."""
    if "out" in fixed:
        raise CxrConfigError(f"{w}: [fixed] out: trials write no run directory; retrain from best.toml")
    try:
        cfg = TrainConfig.from_mapping(fixed, where=f"{w} [fixed]").resolved()
    except CxrError as exc:
        raise CxrConfigError(f"{w}: [fixed] {exc}" if " [fixed]: " not in str(exc) else str(exc)) from None
    if "selftrained" in (cfg.uncertain.values() if isinstance(cfg.uncertain, dict) else [cfg.uncertain]):
        raise CxrConfigError(f"{w}: [fixed] uncertain: U-SelfTrained trains in two phases, which a trial does "
                             "not; tune its first phase (ignore) and self-train with `cxr-tf train`")
    return cfg


def _parse_augment(table: dict, fixed: dict, hps: dict, w: str) -> dict:
    """``[augment]``: field -> (base, per unit), checked against TrainConfig's fields."""
    if AUGMENT in hps and not table:
        raise CxrConfigError(f"{w}: [hyperparameters.augment] needs an [augment] table saying what one unit of "
                             "strength sets (e.g. rotation = 10.0)")
    out = {}
    for field, spec in table.items():
        at = f"{w}: [augment] {field}"
        TrainConfig.from_mapping({field: None}, where=f"{w} [augment]")
        if field in hps or field in fixed and AUGMENT in hps:
            raise CxrConfigError(f"{at}: also in [{'hyperparameters' if field in hps else 'fixed'}]; the "
                                 "augmentation strength sets it")
        spec = _table(spec, at, "key", ("base", "per_unit")) if isinstance(spec, dict) else {"per_unit": spec}
        per = spec.get("per_unit")
        base = spec.get("base", [0.0] * len(per) if isinstance(per, list) else 0.0)
        numbers = [per, base] if not isinstance(per, list) else [*per, *base] if isinstance(base, list) else [None]
        if not numbers or not all(_number(x) for x in numbers) or isinstance(per, list) and len(base) != len(per):
            raise CxrConfigError(f"{at}: expected a number or a list of numbers per unit (and a base like it), "
                                 f"got per_unit = {per!r}, base = {base!r}")
        out[field] = ([float(b) for b in base], [float(p) for p in per]) if isinstance(per, list) \
            else (float(base), float(per))
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_param(name: str, t: dict, fixed: dict, augment: dict, base: TrainConfig, w: str) -> Param | None:
    """One ``[hyperparameters.NAME]`` table, checked; None when ``datasets`` leaves it out here."""
    at = f"{w}: [hyperparameters.{name}]"
    if name != AUGMENT:
        TrainConfig.from_mapping({name: None}, where=f"{w} [hyperparameters]")
    hint = float if name == AUGMENT else typing.get_type_hints(TrainConfig)[name]
    kinds = tuple(typing.get_origin(k) or k for k in (typing.get_args(hint) or (hint,)))
    problem = (f"{name} is the same for every trial; set it in [fixed]" if name in NOT_SEARCHED else
               f"{name} is also in [fixed] (or --set); keep one" if name in fixed else
               "give either choices = [...] or min and max" if ("choices" in t) == ("min" in t or "max" in t) else
               "a condition needs parent_name and a list parent_values"
               if ("parent_name" in t) != isinstance(t.get("parent_values"), list) else
               f"datasets must be a list of {', '.join(cards.available('datasets'))}"
               if "datasets" in t and not (isinstance(t["datasets"], list) and t["datasets"]
                                           and set(t["datasets"]) <= set(cards.available("datasets"))) else None)
    if problem:
        raise CxrConfigError(f"{at}: {problem}")
    if base.dataset not in t.get("datasets", [base.dataset]):
        log.info("%s: not searched on %s", at, base.dataset)
        return None
    if name == "uncertain" and "uncertain" not in cards.dataset_card(base.dataset).get("label_states", {}).values():
        raise CxrConfigError(f"{at}: {base.dataset} has no uncertain labels, so every policy trains the same "
                             "targets; remove it, or restrict it with datasets = [...]")
    cond = dict(parent_name=t.get("parent_name"), parent_values=tuple(t.get("parent_values", ())) or None)
    if "choices" in t:
        choices = t["choices"]
        if not isinstance(choices, list) or not choices or len(set(choices)) < len(choices) or \
                not all(isinstance(c, (str, int, float, bool)) for c in choices) or len(set(map(type, choices))) > 1:
            raise CxrConfigError(f"{at}: choices must be a non-empty list of distinct strings, integers, floats or "
                                 f"booleans, all of one type (keras-tuner's Choice), got {choices!r}")
        if "step" in t or "sampling" in t:
            raise CxrConfigError(f"{at}: step and sampling apply to a range (min, max), not to choices")
        for c in choices:
            _check_value(name, c, fixed, augment, at)
        if t.get("default", choices[0]) not in choices:
            raise CxrConfigError(f"{at}: default {t['default']!r} is not among the choices")
        return Param(name, tuple(choices), default=t.get("default", choices[0]), **cond)
    if float not in kinds and int not in kinds:
        raise CxrConfigError(f"{at}: {name} is not a number; give choices = [...]")
    integer = float not in kinds
    lo, hi, step, sampling = t.get("min"), t.get("max"), t.get("step"), t.get("sampling", "linear")
    default = t.get("default", lo)
    for key, v in (("min", lo), ("max", hi), ("step", step), ("default", default)):
        if not (_number(v) and (not integer or isinstance(v, int))) and (key != "step" or v is not None):
            raise CxrConfigError(f"{at}: {key} must be {'an integer' if integer else 'a number'}, got {v!r}")
    problem = (f"min must be below max (got min = {lo}, max = {hi}); "
               + ("a single value belongs in [fixed]" if lo == hi else "swap them") if not lo < hi else
               f"step must be positive, got {step}" if step is not None and step <= 0 else
               f"sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}" if sampling not in SAMPLINGS else
               f"{sampling} sampling needs min > 0, got {lo}" if sampling != "linear" and lo <= 0 else
               f"default {default!r} is not in [{lo}, {hi}]" if not lo <= default <= hi else None)
    if problem:
        raise CxrConfigError(f"{at}: {problem}")
    cast = int if integer else float
    for v in (lo, hi):
        _check_value(name, cast(v), fixed, augment, at)
    return Param(name, None, cast(lo), cast(hi), None if step is None else cast(step), sampling, cast(default),
                 integer, **cond)


def _check_value(name: str, value, fixed: dict, augment: dict, at: str) -> None:
    """Refuse a value TrainConfig refuses (with the fixed settings), naming the table."""
    if name == "uncertain" and isinstance(value, str) and "selftrained" in value:
        raise CxrConfigError(f"{at}: selftrained trains in two phases, which a trial does not; tune with "
                             "ignore and self-train with `cxr-tf train`")
    try:
        TrainConfig(**fixed, **(augment_fields(augment, value) if name == AUGMENT else {name: value})).resolved()
    except CxrError as exc:
        raise CxrConfigError(f"{at} {value!r}: {exc}") from None


def _conditions(params: dict, tables: dict, base: TrainConfig, w: str) -> dict:
    """Check the parent conditions (one level) and put parents first. A condition on a
    hyperparameter not searched here (``datasets``, ``[demo] drop``) is decided by its fixed value."""
    out = {}
    for name, p in params.items():
        parent, at = p.parent_name, f"{w}: [hyperparameters.{name}]:"
        q = params.get(parent) if parent not in (None, name) else None
        if parent is None:
            out[name] = p
        elif q is None:
            if parent == name or parent not in tables:
                raise CxrConfigError(f"{at} parent_name {parent!r} is not another hyperparameter of the file")
            if getattr(base, parent, None) in p.parent_values:
                out[name] = Param(**{**asdict(p), "parent_name": None, "parent_values": None})
        else:
            problem = (f"parent_name {parent!r} is a range; a parent must have choices" if q.choices is None else
                       f"parent_name {parent!r} is conditional itself; one level only" if q.parent_name else
                       f"parent_values {list(p.parent_values)} must be among the choices of {parent}: "
                       f"{list(q.choices)}" if not set(p.parent_values) <= set(q.choices) else None)
            if problem:
                raise CxrConfigError(f"{at} {problem}")
            out[name] = p
    return dict(sorted(out.items(), key=lambda item: item[1].parent_name is not None))


# ---- TOML output (flat scalars, lists and inline tables; TOML has no null, so None is left out)

def toml_value(v) -> str:
    """One value in TOML syntax (TOML has no null: tables leave None out)."""
    if isinstance(v, (bool, int, str)):
        return json.dumps(v)  # true/false, 12, "text": JSON's escapes are TOML's
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan" if math.isnan(v) else "inf" if v > 0 else "-inf"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_table(name: str, values: Mapping, header: str = "") -> str:
    """A TOML document: ``# header`` comment lines, then ``[name]`` with ``values``."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] + [f"[{name}]"]
    return "\n".join(lines + [f"{_key(k)} = {toml_value(v)}" for k, v in values.items() if v is not None]) + "\n"


# ---- reports, written by whoever holds the oracle
