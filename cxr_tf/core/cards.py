"""The data-card registry: dataset cards (``datasets/<name>/card.toml``, one folder per dataset) and
reproduction recipes (``reproductions/<name>.toml``).

Both are data. In a clone they sit at the repository's top level; after ``pip install`` they are
installed inside the package as ``cxr_tf/datasets`` and ``cxr_tf/reproductions`` (see setup.cfg).
TOML is read by :func:`cxr_tf.core.settings.read_toml` (one error style).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from cxr_tf.core.errors import CxrDataError
from cxr_tf.core.settings import read_toml

_PACKAGE = Path(__file__).resolve().parents[1]
_GLOB = {"datasets": "*/card.toml", "reproductions": "*.toml"}


def data_dir(kind: str) -> Path:
    """Return the folder holding the ``kind`` cards ("datasets" or "reproductions")."""
    if kind not in ("datasets", "reproductions"):
        raise ValueError(f"unknown card kind {kind!r}; expected 'datasets' or 'reproductions'")
    for candidate in (_PACKAGE.parent / kind, _PACKAGE / kind):
        if candidate.is_dir() and any(candidate.glob(_GLOB[kind])):
            return candidate
    raise CxrDataError(None, f"cannot find the {kind}/ cards next to or inside {_PACKAGE}; "
                             "is the package installed completely?")


def available(kind: str) -> list[str]:
    """Names of the cards of ``kind`` that are available."""
    return sorted((p.parent.name if kind == "datasets" else p.stem) for p in data_dir(kind).glob(_GLOB[kind]))


def card_path(kind: str, name: str) -> Path:
    """Where the card of ``name`` is (or would be)."""
    return data_dir(kind) / (f"{name}/card.toml" if kind == "datasets" else f"{name}.toml")


@functools.lru_cache(maxsize=None)
def load(kind: str, name: str) -> dict[str, Any]:
    """Load one card as a dict; raise a clear error naming the card for an unknown name."""
    path = card_path(kind, name)
    if not path.is_file():
        raise CxrDataError(path, f"no such {kind} card; available: {', '.join(available(kind))}")
    card = read_toml(path, f"{kind} card")
    card.setdefault("name", name)
    return card


def dataset_card(name: str) -> dict[str, Any]:
    """The dataset card ``datasets/<name>/card.toml``."""
    return load("datasets", name)


def reproduction(name: str) -> dict[str, Any]:
    """The reproduction config ``reproductions/<name>.toml``."""
    return load("reproductions", name)
