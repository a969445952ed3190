"""Shared pieces of the command modules: choices read lazily from the registries, and options
given as KEY=VALUE."""

from __future__ import annotations

from typing import Callable, Sequence

import click


class LazyChoice(click.Choice):
    """A ``click.Choice`` whose choices are read from a registry only when first needed (showing
    a command's help or checking a value), so building the command group stays instant."""

    def __init__(self, load: Callable[[], Sequence[str]]):
        self._load, self._loaded = load, None
        super().__init__(())

    @property
    def choices(self):
        if self._loaded is None:
            self._loaded = tuple(self._load())
        return self._loaded

    @choices.setter
    def choices(self, _value):  # click's constructor assigns the (empty) placeholder
        pass


def datasets() -> LazyChoice:
    """Datasets with a source module (the cards' registry)."""
    def load():
        from cxr_tf import sources
        return sources.names()
    return LazyChoice(load)


def presets_of(table: str) -> LazyChoice:
    """Names in a ``presets.toml`` table (``presets``, ``backbones``, ``losses``, ...)."""
    def load():
        from cxr_tf import presets
        return presets.names(table)
    return LazyChoice(load)


def of(module: str, name: str) -> LazyChoice:
    """The names in a module-level tuple, e.g. ``of("cxr_tf.findings", "UNCERTAIN_POLICIES")``."""
    def load():
        import importlib
        return getattr(importlib.import_module(module), name)
    return LazyChoice(load)


def echo_skipped(skipped) -> None:
    """Report the (file, reason) pairs a command skipped, counted, at the end of its output."""
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s):")
        for path, why in skipped:
            click.echo(f"  {path}: {why}")


def given(ctx: click.Context, mapping: dict) -> dict:
    """The subset of ``mapping`` (parameter name -> value) the user typed on the command line,
    leaving out defaults, so a config file, a recipe, a preset or a resumed run keeps its own."""
    source = click.core.ParameterSource
    return {k: v for k, v in mapping.items()
            if ctx.get_parameter_source(k) in (source.COMMANDLINE, source.ENVIRONMENT)}
