"""Heatmap commands: ``explain``, ``localize``."""

from __future__ import annotations

from pathlib import Path

import click

from cxr_tf.cli.common import LazyChoice, echo_skipped
from cxr_tf.explain.registry import DEFAULT_METHOD


def _methods(exclude=()):
    def load():
        from cxr_tf.explain.methods import METHODS
        return tuple(m for m in METHODS if m not in exclude)
    return load


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--method", default=DEFAULT_METHOD, show_default=True, type=LazyChoice(_methods()),
              help="The heatmap method (cxr_tf.explain.METHODS; `cxr-tf explain --help` lists them).")
@click.option("--finding", default=None, help="Explain this finding [default: the --top most probable].")
@click.option("--top", default=1, show_default=True, help="How many of the most probable findings to explain.")
@click.option("--out", "out_dir", default="explain", show_default=True, type=click.Path(file_okay=False),
              help="Folder for one overlay PNG and one heatmap .npy per image and finding.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (counted and listed) instead of failing.")
def explain(model, images, method, finding, top, out_dir, skip_bad):
    """Heatmaps in original-image coordinates: overlays (PNG) and raw maps (.npy).

    Example: cxr-tf explain runs/nih_densenet/model.keras scans/*.png --method layercam --out heatmaps"""
    from cxr_tf.explain.run import explain_files

    written, skipped = explain_files(model, images, out_dir, method=method, finding=finding, top=top,
                                     skip_bad=skip_bad)
    for w in written:
        click.echo(f"{w['file']}: {w['finding']} p={w['probability']:.3f} -> {w['png']}")
    click.echo(f"wrote {len(written)} overlay(s) and heatmap(s) to {out_dir}")
    echo_skipped(skipped)


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory from `cxr-tf train` (its records give the boxes).")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Re-read the ground-truth box list from the dataset [default: the records' boxes.csv].")
@click.option("--method", default=DEFAULT_METHOD, show_default=True,
              type=LazyChoice(_methods(exclude=("lime",))),
              help="The heatmap method scored against the boxes (`cam` is ChestX-ray8's and CheXNet's own).")
def localize(run_dir, data_dir, method):
    """Score weakly-supervised localization against the ground-truth boxes: ChestX-ray8's Table 4
    (fixed levels) and CheXlocalize's protocol (a threshold per finding tuned on annotated
    validation images; mIoU, hit rate, box accuracy, with bootstrap CIs and the oracle ceiling).

    Example: cxr-tf localize --run runs/nih_densenet --method cam"""
    from cxr_tf.explain.localize import localize_run

    result = localize_run(run_dir, method, data_dir=data_dir)
    click.echo((Path(run_dir) / "localization.md").read_text())
    click.echo(f"{len(result.fixed)} rows in {run_dir}/localization.csv; CheXlocalize thresholds "
               f"(tuned on {result.tuned_on}) in {run_dir}/localization_thresholds.json")


def register(group: click.Group) -> None:
    """Add the heatmap commands to the ``cxr-tf`` group."""
    for cmd in (explain, localize):
        group.add_command(cmd)
