"""The ``cxr-tf`` command line: one click group, one thin module per area (``data``, ``model``,
``heatmaps``) registered on it. Heavy modules are imported inside the commands, and choice lists
come from the registries lazily, so ``cxr-tf --help`` never imports TensorFlow or pydicom.

Errors cxr_tf raises on purpose (:class:`cxr_tf.core.errors.CxrError`: bad input data, bad choices)
print as one line and exit with code 2; anything else is a bug and shows its traceback."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from cxr_tf.core.errors import CxrConfigError, CxrError

AREAS = ("data", "model", "heatmaps", "dicom", "label", "tune", "federated", "service")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


class Group(click.Group):
    """Turn cxr_tf's errors into one clear line and exit code 2; ``-vv`` shows the traceback too."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CxrError as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            message = exc.cli_message() if isinstance(exc, CxrConfigError) else str(exc)
            click.echo(f"error: {message}", err=True)
            sys.exit(2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxr-tf")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """cxr-tf: chest X-ray baselines (ChestX-ray8, CheXNet, CheXpert) in Keras / TensorFlow."""
    _setup_logging(verbose)


for _area in AREAS:
    importlib.import_module(f"cxr_tf.cli.{_area}").register(main)
