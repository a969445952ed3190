"""``cxr-tf``: the click group and its commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from cxr_tf.errors import CxrError

DATASETS = ("chestxray14",)


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


class _Group(click.Group):
    """Turn cxr_tf's errors (and bad-value errors) into one clear line and exit code 2, not a
    traceback; ``-vv`` shows the traceback too."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (CxrError, ValueError) as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxr-tf")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """cxr-tf: chest X-ray baselines (ChestX-ray8, CheXNet, CheXpert) in Keras / TensorFlow."""
    _setup_logging(verbose)


@main.group()
def synth() -> None:
    """Write synthetic phantom datasets in real on-disk layouts."""


@synth.command("chestxray14")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--n", "n_images", default=600, show_default=True, help="Number of images.")
@click.option("--patients", default=None, type=int, help="Number of patients [default: n/3].")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Random seed (output is deterministic).")
def synth_chestxray14(out_dir, n_images, patients, size, seed):
    """Write a phantom ChestX-ray14 (Data_Entry, BBox list, official lists, images_0NN/images/)."""
    from cxr_tf.synth.chestxray14 import write_dataset

    info = write_dataset(out_dir, n_images=n_images, n_patients=patients, size=size, seed=seed)
    click.echo(f"wrote {info['images']} images of {info['patients']} patients "
               f"({info['boxes']} boxes) to {out_dir}")


@main.command()
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The dataset in its real on-disk layout.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Records directory to write.")
@click.option("--split", default="official", show_default=True,
              type=click.Choice(["official", "random"]),
              help="official: the NIH lists (val carved out by patient); random: patient-level 8:1:1.")
@click.option("--size", default=256, show_default=True, help="Stored image side in pixels.")
@click.option("--aspect", default="pad", show_default=True, type=click.Choice(["pad", "crop", "stretch"]),
              help="How non-square images become square (recorded per image).")
@click.option("--encoding", default="png", show_default=True, type=click.Choice(["png", "jpeg"]),
              help="Storage format of the resized images (png is lossless).")
@click.option("--workers", default=None, type=int, help="Writer processes [default: all cores].")
@click.option("--images-per-shard", default=512, show_default=True)
@click.option("--seed", default=None, type=int, help="Split and shard-order seed [default: the card's].")
@click.option("--allow-missing", is_flag=True,
              help="Skip images that are absent or unreadable; they are counted and reported.")
def prepare(dataset, data_dir, out_dir, split, size, aspect, encoding, workers, images_per_shard,
            seed, allow_missing):
    """Source layout -> manifest -> sharded TFRecords, manifest.csv and summary.json in OUT."""
    from cxr_tf.prepare import prepare as run

    s = run(dataset, data_dir, out_dir, split=split, size=size, aspect=aspect, workers=workers,
            allow_missing=allow_missing, encoding=encoding, images_per_shard=images_per_shard,
            seed=seed)
    c = s["counts"]
    click.echo(f"wrote {c['written_images']} of {c['listed_images']} listed images to {out_dir}")
    for split_name, part in s["splits"].items():
        click.echo(f"  {split_name:5s} {part['images']:7d} images  {part['patients']:6d} patients")
    if c["missing_images"] or c["unreadable_images"]:
        click.echo(f"skipped: {c['missing_images']} missing, {c['unreadable_images']} unreadable "
                   f"(see {out_dir}/skipped.csv)")
        for u in s["unreadable"][:10]:
            click.echo(f"  {u['reason']}")


@main.command()
@click.argument("records_dir", type=click.Path(exists=True, file_okay=False))
def summary(records_dir):
    """Print a records directory's summary.json (without the per-image sizes)."""
    from cxr_tf.prepare import load_summary

    s = load_summary(records_dir)
    s.pop("image_sizes", None)
    click.echo(json.dumps(s, indent=2))


@main.command()
@click.option("--records", required=True, type=click.Path(exists=True, file_okay=False),
              help="Records directory from `cxr-tf prepare`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--preset", default="chexnet", show_default=True,
              help="Model preset (models/presets.toml): chexnet, chestxray8, chexpert, tiny.")
@click.option("--model", "backbone", default=None,
              help="Backbone: densenet121, resnet50, vgg16, inception_v3, tiny [default: preset's].")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (Keras download), a local no-top weights file, or none.")
@click.option("--loss", default="bce", show_default=True,
              type=click.Choice(["bce", "masked_bce", "wcel", "weighted_bce", "focal"]))
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=16, show_default=True, help="Global batch size.")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate (÷10 on plateau).")
@click.option("--image-size", default=None, type=int, help="Model input side [default: preset's].")
@click.option("--bn-momentum", default=0.9, show_default=True, type=float,
              help="BatchNorm momentum (0.9 = PyTorch's 0.1, which CheXNet trained with).")
@click.option("--mixed-precision", is_flag=True, help="float16 on GPU, bfloat16 on CPU.")
@click.option("--jit-compile", is_flag=True, help="XLA-compile the train step (slow start on CPU).")
@click.option("--seed", default=0, show_default=True)
@click.option("--deterministic", is_flag=True, help="Deterministic data order and ops.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
def train(records, out_dir, preset, backbone, weights, loss, epochs, batch_size, lr, image_size,
          bn_momentum, mixed_precision, jit_compile, seed, deterministic, resume):
    """Train a model on prepared records (default: the CheXNet recipe)."""
    from cxr_tf.train import TrainConfig, train as run

    cfg = TrainConfig(records=records, out=out_dir, preset=preset, backbone=backbone, weights=weights,
                      loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                      bn_momentum=bn_momentum, mixed_precision=mixed_precision, jit_compile=jit_compile, seed=seed,
                      deterministic=deterministic, verbose=1)
    state = run(cfg, resume=resume)
    click.echo(f"trained {state.get('epoch')} epoch(s); best val_loss {state.get('best_val_loss')} "
               f"at epoch {state.get('best_epoch')}; model: {out_dir}/model.keras")


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Evaluate on other records [default: the run's].")
@click.option("--bootstrap", default=1000, show_default=True, help="Resamples for the 95% CIs.")
@click.option("--with-patient", is_flag=True, help="Include patient ids in the predictions CSV.")
def evaluate(run_dir, split, records, bootstrap, with_patient):
    """Metrics (AUROC with bootstrap CIs, thresholded metrics, baseline), figures and per-image
    predictions for a trained run."""
    from cxr_tf.evaluate import evaluate as run

    m = run(run_dir, split=split, records=records, n_boot=bootstrap, with_patient=with_patient)
    click.echo(f"{'finding':20s} {'AUROC':>7s} {'95% CI':>15s} {'F1':>6s}")
    for r in m["per_class"]:
        click.echo(f"{r['finding']:20s} {r['auroc']:7.4f} {r['auroc_ci_low']:7.4f}-{r['auroc_ci_high']:6.4f} "
                   f"{r['f1']:6.3f}")
    click.echo(f"wrote metrics.json, metrics.csv, predictions_{split}.csv and figures to {run_dir}")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_csv", default="preds.csv", show_default=True, type=click.Path(dir_okay=False))
@click.option("--batch-size", default=16, show_default=True)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (counted and listed) instead of failing.")
def predict(model, images, out_csv, batch_size, skip_bad):
    """Probabilities per finding for PNG, JPEG and DICOM images (files or folders), and the binary
    call at the run's stored thresholds."""
    from cxr_tf.predict import predict_images

    table, skipped = predict_images(model, images, batch_size=batch_size, skip_bad=skip_bad, out_csv=out_csv)
    probs = [c for c in table.columns if c.startswith("prob_")]
    for _, row in table.iterrows():
        top = sorted(((row[c], c[5:]) for c in probs), reverse=True)[:3]
        calls = [c[5:] for c in table.columns if c.startswith("call_") and row[c]]
        click.echo(f"{row['file']}: " + ", ".join(f"{n} {p:.3f}" for p, n in top)
                   + (f"  | positive calls: {', '.join(calls) or 'none'}" if any(
                       c.startswith("call_") for c in table.columns) else ""))
    click.echo(f"wrote {len(table)} prediction(s) to {out_csv}")
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable image(s):")
        for f, why in skipped:
            click.echo(f"  {f}: {why}")


@main.command()
@click.argument("paper", type=click.Choice(["chexnet", "chestxray8"]))
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="The dataset in its real layout (not needed with --demo).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--split", default="official", show_default=True, type=click.Choice(["official", "random"]))
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe beside the paper's, and stop.")
@click.option("--demo", is_flag=True, help="Run the chain on freshly synthesized phantoms (minutes on a CPU).")
@click.option("--weights", default=None, help="Override the recipe's weights (imagenet, a file, none).")
@click.option("--epochs", default=None, type=int, help="Override the recipe's epochs.")
@click.option("--allow-missing", is_flag=True, help="Prepare a partial download (missing images counted).")
def reproduce(paper, data_dir, out_dir, split, dry_run, demo, weights, epochs, allow_missing):
    """prepare -> train -> evaluate with a paper's recipe, ending in OUT/report.md beside the
    paper's published table."""
    from cxr_tf.reproduce import reproduce as run

    res = run(paper, out_dir, data_dir, split=split, demo=demo, dry_run=dry_run, weights=weights,
              epochs=epochs, allow_missing=allow_missing or None)
    if dry_run:
        click.echo(res["table"])
        return
    click.echo(f"mean AUROC {res['mean_auroc']:.4f} in {res['seconds'] / 60:.1f} min; report: {res['report']}")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--method", default="gradcam", show_default=True,
              type=click.Choice(["cam", "gradcam", "gradcam++", "scorecam", "smoothgrad", "ig", "lime"]))
@click.option("--finding", default=None, help="Explain this finding (default: the --top most probable).")
@click.option("--top", default=1, show_default=True, help="How many of the most probable findings to explain.")
@click.option("--out", "out_dir", default="explain", show_default=True, type=click.Path(file_okay=False))
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images instead of failing.")
def explain(model, images, method, finding, top, out_dir, skip_bad):
    """Heatmaps in original-image coordinates: overlays (PNG) and raw maps (.npy)."""
    from cxr_tf.explain.run import explain_files

    written = explain_files(model, images, out_dir, method=method, finding=finding, top=top, skip_bad=skip_bad)
    for w in written:
        click.echo(f"{w['file']}: {w['finding']} p={w['probability']:.3f} -> {w['png']}")
    click.echo(f"wrote {len(written)} overlay(s) and heatmap(s) to {out_dir}")


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Re-read the ground-truth box list from the dataset [default: the records' boxes.csv].")
@click.option("--method", default="cam", show_default=True,
              type=click.Choice(["cam", "gradcam", "gradcam++", "scorecam", "smoothgrad", "ig"]))
def localize(run_dir, data_dir, method):
    """Score weakly-supervised localization against the ground-truth boxes (ChestX-ray8 Table 4)."""
    from cxr_tf.localize import localize_run

    table = localize_run(run_dir, method, data_dir=data_dir)
    click.echo((Path(run_dir) / "localization.md").read_text())
    click.echo(f"{len(table)} rows in {run_dir}/localization.csv")
