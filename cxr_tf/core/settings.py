"""Settings: the one TOML reader (every data file and config goes through it, with one error
style) and the one precedence rule of every command.

Precedence, lowest first: the built-in defaults, a recipe or preset, a ``--config`` file, a demo's
own settings, then each option given on the command line (``--lr``, ``--set key=value``). An option
the user did not give never overrides anything: :func:`layered` merges only what each layer holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from cxr_tf.core.errors import CxrDataError

TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path, what: str = "file") -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or invalid one raises :class:`CxrDataError`
    naming the file (``what`` says what it should have been: "config file", "search space", ...)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CxrDataError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise CxrDataError(path, f"is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise CxrDataError(path, f"invalid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CxrDataError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CxrDataError(path, f"invalid TOML: {exc}") from None


def parse_value(raw: str):
    """A command-line value read as TOML (numbers, booleans, lists, quoted strings), else the
    bare string: ``1e-4`` -> 0.0001, ``[0.8, 1.0]`` -> a list, ``none`` -> "none"."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def layered(*layers: Mapping | None) -> dict:
    """The layers merged, later ones winning, key by key; ``None`` layers and ``None`` values (an
    option not given) are skipped, so only what the user set overrides a lower layer."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is not None:
                out[key] = value
    return out
