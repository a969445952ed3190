"""Sources: the registry of datasets and the shared steps of reading one (no TensorFlow here).

A dataset is one folder, ``datasets/<name>/`` (shipped as ``cxr_tf.datasets.<name>``):

- ``card.toml``: how to obtain it, licence, citation, findings, layout, splits, expected counts,
  its crosswalk entries and its TFDS builder;
- ``source.py``: reads the real on-disk layout into a manifest (:class:`Source`, on the shared
  steps of :mod:`cxr_tf.sources.base`);
- ``phantom.py``: ``write_dataset`` writes a phantom tree in exactly that layout (``cxr-tf synth``,
  the source contract test, demos);

and its test, ``tests/datasets/test_<name>.py``. Every folder with a ``card.toml`` is registered;
nothing else is edited (``tests/sources/test_registry.py`` checks that every dataset has all parts).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Callable, Mapping

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.sources.base import (BOX_COLUMNS, Source, SourceData, begin, boxes_in_pixels,  # noqa: F401
                                 finish)

PARTS = ("card.toml", "source.py", "phantom.py")


def names() -> tuple[str, ...]:
    """The registered datasets (every ``datasets/<name>/card.toml``), sorted."""
    return tuple(cards.available("datasets"))


def synth_names() -> tuple[str, ...]:
    """The datasets that can be synthesized as phantoms: every registered one."""
    return names()


def _unknown(name: str, known, key: str) -> CxrConfigError:
    return CxrConfigError(f"unknown dataset {name!r}; available: {', '.join(known) or 'none'}", key=key)


def _datasets_package():
    """``cxr_tf.datasets``: installed inside the package, or (a clone run without installing)
    the top-level ``datasets/`` folder the cards are read from."""
    try:
        return importlib.import_module("cxr_tf.datasets")
    except ModuleNotFoundError:
        folder = cards.data_dir("datasets")
        spec = importlib.util.spec_from_file_location("cxr_tf.datasets", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["cxr_tf.datasets"] = module
        spec.loader.exec_module(module)
        return module


def module(name: str, part: str):
    """A dataset's ``source`` or ``phantom`` module."""
    if name not in names():
        raise _unknown(name, names(), "dataset")
    _datasets_package()
    return importlib.import_module(f"cxr_tf.datasets.{name}.{part}")


def get(name: str) -> Source:
    """The source module of a dataset, e.g. ``get("chestxray14").load(data_dir)``."""
    source = module(name, "source")
    if not isinstance(source, Source) or source.NAME != name:
        raise TypeError(f"{source.__name__} does not satisfy the Source protocol for {name!r}")
    return source


def synth_writer(name: str) -> Callable:
    """The phantom writer of a dataset: ``write_dataset(out_dir, n_images=..., n_patients=...,
    size=..., seed=...)`` returns counts, and ``"data_dir"`` when the dataset's ``--data-dir`` is
    a folder inside ``out_dir`` (CheXpert's ``CheXpert-v1.0-small/``)."""
    return module(name, "phantom").write_dataset


def check_options(source: Source, options: Mapping) -> dict:
    """``options`` for ``source.load``, refusing the names it does not accept."""
    unknown = sorted(set(options) - set(source.OPTIONS))
    if unknown:
        accepted = ", ".join(source.OPTIONS) or "none"
        raise CxrConfigError(f"{source.NAME} has no option(s) {unknown}; it accepts: {accepted}",
                             key="option")
    return dict(options)
