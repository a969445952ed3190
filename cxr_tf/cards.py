"""Dataset cards (``datasets/*.toml``) and reproduction configs (``reproductions/*.toml``).

Both are data. In a clone they sit at the repository's top level; after ``pip install`` they are
installed inside the package as ``cxr_tf/datasets`` and ``cxr_tf/reproductions`` (see setup.cfg).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from cxr_tf.errors import CxrDataError

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Return the folder holding the ``kind`` cards ("datasets" or "reproductions")."""
    if kind not in ("datasets", "reproductions"):
        raise ValueError(f"unknown card kind {kind!r}; expected 'datasets' or 'reproductions'")
    for candidate in (_PACKAGE.parent / kind, _PACKAGE / kind):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise CxrDataError(None, f"cannot find the {kind}/ cards next to or inside {_PACKAGE}; "
                             "is the package installed completely?")


def available(kind: str) -> list[str]:
    """Names of the cards of ``kind`` that are available."""
    return sorted(p.stem for p in data_dir(kind).glob("*.toml"))


@functools.lru_cache(maxsize=None)
def load(kind: str, name: str) -> dict[str, Any]:
    """Load one card as a dict; raise a clear error naming the card for an unknown name."""
    path = data_dir(kind) / f"{name}.toml"
    if not path.is_file():
        raise CxrDataError(path, f"no such {kind} card; available: {', '.join(available(kind))}")
    with open(path, "rb") as fh:
        try:
            card = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise CxrDataError(path, f"invalid TOML: {exc}") from None
    card.setdefault("name", name)
    return card


def dataset_card(name: str) -> dict[str, Any]:
    """The dataset card ``datasets/<name>.toml``."""
    return load("datasets", name)


def reproduction(name: str) -> dict[str, Any]:
    """The reproduction config ``reproductions/<name>.toml``."""
    return load("reproductions", name)
