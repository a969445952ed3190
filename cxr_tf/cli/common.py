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
        from cxr_tf.models import presets
        return presets.names(table)
    return LazyChoice(load)


RUNNER_HELP = (
    "pool: a process pool on this machine (--workers). beam: an Apache Beam pipeline (pip install 'cxr-tf[beam]'), "
    "by default the DirectRunner in multi-process mode with --workers processes; other runners through "
    "--beam-option: runner=FlinkRunner flink_master=HOST:8081 environment_type=LOOPBACK; runner=SparkRunner "
    "spark_master_url=spark://HOST:7077 (Spark job server); runner=DataflowRunner project=P region=R "
    "temp_location=gs://B/tmp. Their workers must see the input and output folders at the same paths.")
BEAM_OPTION_HELP = ("A Beam pipeline option KEY=VALUE (repeatable; --runner beam only), e.g. runner=FlinkRunner, "
                    "direct_num_workers=4, flink_master=HOST:8081.")


def of(module: str, name: str) -> LazyChoice:
    """The names in a module-level tuple, e.g. ``of("cxr_tf.vocab.findings", "UNCERTAIN_POLICIES")``."""
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


def train_settings(*, defaults=None, config_file=None, named=None, sets=(), fixed=None,
                   ctx: click.Context | None = None) -> dict:
    """The TrainConfig fields of a command, in the one precedence every command uses (lowest
    first): the command's own ``defaults``, a ``--config`` file, the named options the user typed
    (``--epochs``, ``--lr``: with ``ctx``, only those given on the command line), ``--set`` pairs,
    then what the command itself ``fixed`` (``--out``). A recipe or preset sits beneath all of them
    where the command reads one (:func:`cxr_tf.core.settings.layered`)."""
    from cxr_tf.core.settings import layered
    from cxr_tf.training.config import load_file, parse_set

    named = given(ctx, named) if ctx is not None and named else named
    return layered(defaults, load_file(config_file) if config_file else None, named, parse_set(sets), fixed)


def given(ctx: click.Context, mapping: dict) -> dict:
    """The subset of ``mapping`` (parameter name -> value) the user typed on the command line,
    leaving out defaults, so a config file, a recipe, a preset or a resumed run keeps its own."""
    source = click.core.ParameterSource
    return {k: v for k, v in mapping.items()
            if ctx.get_parameter_source(k) in (source.COMMANDLINE, source.ENVIRONMENT)}
