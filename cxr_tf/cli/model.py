"""Model commands: ``train``, ``evaluate``, ``predict``, ``reproduce``."""

from __future__ import annotations

import click

from cxr_tf.cli.common import LazyChoice, echo_skipped, of, presets_of, train_settings


def _reproductions():
    from cxr_tf.core import cards
    return cards.available("reproductions")


def _cam_callbacks(cfg, run_dir) -> list:
    """The TensorBoard Grad-CAM callback for a resolved config (none when tb_cam_images is 0)."""
    from cxr_tf.explain.tensorboard import cam_images_for
    cam = cam_images_for(cfg, run_dir)
    return [cam] if cam else []


@click.command()
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Records directory from `cxr-tf prepare` [default with --resume: the run's].")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A TOML file of settings (TrainConfig field names; a [train] table is read if present).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any TrainConfig field, e.g. --set 'crop_scale=[0.8,1.0]' --set dropout=0.2 (wins over the rest). "
                   "Repeatable.")
@click.option("--preset", default=None, type=presets_of("presets"), help="Model preset [default: chexnet].")
@click.option("--backbone", "--model", "backbone", default=None, type=presets_of("backbones"),
              help="Backbone [default: the preset's].")
@click.option("--weights", default=None,
              help="imagenet, a local no-top weights file, or none [default: the preset's, else imagenet].")
@click.option("--loss", default=None, type=presets_of("losses"), help="Loss [default: bce].")
@click.option("--uncertain", default=None, metavar="POLICY|FINDING=POLICY,...",
              help="Uncertainty policy: ignore, zeros, ones, selftrained, multiclass, ones_lsr, zeros_lsr; or one "
                   "per finding, e.g. Atelectasis=ones,Edema=ones,default=ignore (quote names with spaces) "
                   "[default: ignore].")
@click.option("--blank", default=None, type=of("cxr_tf.vocab.findings", "BLANK_POLICIES"),
              help="What blank (unmentioned) labels become [default: zeros].")
@click.option("--epochs", default=None, type=int, help="Epochs [default: 10].")
@click.option("--batch-size", default=None, type=int, help="Images per step, over all replicas [default: 16].")
@click.option("--lr", default=None, type=float, help="Adam learning rate, ÷10 on plateau [default: 1e-3].")
@click.option("--image-size", default=None, type=int, help="Model input side in pixels [default: the preset's].")
@click.option("--bn-momentum", default=None, type=float,
              help="BatchNorm momentum [default: 0.9 = PyTorch's 0.1, which CheXNet trained with].")
@click.option("--mixed-precision", is_flag=True, default=None, help="float16 on GPU, bfloat16 on CPU.")
@click.option("--jit-compile", is_flag=True, default=None, help="XLA-compile the train step (slow start on CPU).")
@click.option("--seed", default=None, type=int, help="Random seed [default: 0].")
@click.option("--deterministic", is_flag=True, default=None, help="Deterministic data order and ops.")
@click.option("--data-service", default=None, metavar="HOST:PORT",
              help="Decode the training images on this tf.data service (`cxr-tf data-service`), each image once per "
                   "epoch (distributed_epoch) [default: in this process].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, to its planned epochs.")
@click.pass_context
def train(ctx, records, out, config_file, sets, preset, backbone, weights, loss, uncertain, blank, epochs,
          batch_size, lr, image_size, bn_momentum, mixed_precision, jit_compile, seed, deterministic, data_service,
          resume):
    """Train a model on prepared records (default: the CheXNet recipe). Settings come from the
    preset, beneath --config, beneath the named options, beneath --set.

    Example: cxr-tf train --records runs/nih_records --out runs/nih_densenet --preset chexnet"""
    from cxr_tf.core.errors import CxrConfigError
    from cxr_tf.training.config import TrainConfig

    named = dict(preset=preset, backbone=backbone, weights=weights, loss=loss, uncertain=uncertain,
                 blank=blank, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                 bn_momentum=bn_momentum, mixed_precision=mixed_precision, jit_compile=jit_compile,
                 seed=seed, deterministic=deterministic, data_service=data_service)
    values = train_settings(defaults={"verbose": 1}, config_file=config_file, named=named, sets=sets,
                            fixed={"out": out, "records": records}, ctx=ctx)
    if not records and not resume and "records" not in values:
        raise CxrConfigError("is required (it is optional only with --resume)", key="records")
    cfg = TrainConfig.from_mapping(values)

    from cxr_tf.training.train import planned_config, train as run

    state = run(cfg, resume=resume, callbacks=_cam_callbacks(planned_config(cfg, resume)[0], out))
    click.echo(f"trained {state.get('epoch')} epoch(s); best {state.get('monitor', 'val_loss')} at epoch "
               f"{state.get('best_epoch')} (lowest val_loss {state.get('best_val_loss')}); model: {out}/model.keras")


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A run directory from `cxr-tf train`.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="The split of the records to score.")
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Evaluate on other records [default: the run's].")
@click.option("--bootstrap", default=1000, show_default=True, help="Resamples for the 95% CIs.")
@click.option("--with-patient", is_flag=True, help="Include patient ids in the predictions CSV.")
@click.option("--approximate", is_flag=True,
              help="On another dataset's records, also score the crosswalk's approximate pairs "
                   "(e.g. Infiltration for Lung Opacity).")
@click.option("--threshold-rule", default="max_f1", show_default=True, metavar="NAME[:VALUE]",
              help="How each finding's threshold is chosen on the validation split: max_f1, youden, "
                   "sensitivity:0.9, specificity:0.9, fixed:0.5, or calibrated[:RULE] (outputs mapped so "
                   "that each threshold is 0.5, as torchxrayvision's op_threshs).")
def evaluate(run_dir, split, records, bootstrap, with_patient, approximate, threshold_rule):
    """Metrics (AUROC with bootstrap CIs, thresholded metrics, baseline), figures and per-image
    predictions for a trained run; the chosen thresholds are stored in its model.keras. With
    --records of another dataset, the findings the vocabularies share are scored (the crosswalk),
    into RUN/evaluate_<records>/.

    Example: cxr-tf evaluate --run runs/nih_densenet --split test --threshold-rule youden"""
    from cxr_tf.evaluation.evaluate import evaluate as run

    m = run(run_dir, split=split, records=records, n_boot=bootstrap, with_patient=with_patient,
            threshold_rule=threshold_rule,
            approximate=approximate)
    for pair in m.get("crosswalk", {}).get("mapped", []):
        click.echo(f"  {pair['finding']} <- model output {pair['model_output']} ({pair['match']})")
    if "crosswalk" in m:
        click.echo(f"  not scored: {', '.join(m['crosswalk']['records_findings_not_scored']) or 'none'}")
    if m.get("labels"):
        click.echo(f"  {split} labels: {m['labels']}")
    click.echo(f"{'finding':26s} {'AUROC':>7s} {'95% CI':>15s} {'F1':>6s}")
    for r in m["per_class"]:
        click.echo(f"{r['finding']:26s} {r['auroc']:7.4f} {r['auroc_ci_low']:7.4f}-{r['auroc_ci_high']:6.4f} "
                   f"{r['f1']:6.3f}")
    click.echo(f"wrote metrics.json, metrics.csv, predictions_{split}.csv and figures to {m['out_dir']}")


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_csv", default="preds.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV to write: one row per image, a probability column per finding.")
@click.option("--batch-size", default=16, show_default=True, help="Images per prediction batch.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (counted and listed) instead of failing.")
def predict(model, images, out_csv, batch_size, skip_bad):
    """Probabilities per finding for PNG, JPEG and DICOM images (files or folders), and the binary
    call at the thresholds stored in the model (once `cxr-tf evaluate` has chosen them).

    Example: cxr-tf predict runs/nih_densenet/model.keras scans/*.png --out preds.csv"""
    from cxr_tf.evaluation.predict import predict_images

    table, skipped = predict_images(model, images, batch_size=batch_size, skip_bad=skip_bad, out_csv=out_csv)
    probs = [c for c in table.columns if c.startswith("prob_")]
    has_calls = any(c.startswith("call_") for c in table.columns)
    for _, row in table.iterrows():
        top = sorted(((row[c], c[5:]) for c in probs), reverse=True)[:3]
        calls = [c[5:] for c in table.columns if c.startswith("call_") and row[c]]
        click.echo(f"{row['file']}: " + ", ".join(f"{n} {p:.3f}" for p, n in top)
                   + (f"  | positive calls: {', '.join(calls) or 'none'}" if has_calls else ""))
    click.echo(f"wrote {len(table)} prediction(s) to {out_csv}")
    echo_skipped(skipped)


@click.command()
@click.argument("paper", type=LazyChoice(_reproductions))
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="The dataset in its real layout (not needed with --demo).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the records, the run and report.md.")
@click.option("--split", default="official", show_default=True, type=of("cxr_tf.sources.splits", "METHODS"),
              help="official: the dataset's own split; random: patient-level.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe beside the paper's, and stop.")
@click.option("--demo", is_flag=True, help="Run the chain on freshly synthesized phantoms (minutes on a CPU).")
@click.option("--weights", default=None, help="Override the recipe's weights (imagenet, a file, none).")
@click.option("--epochs", default=None, type=int, help="Override the recipe's epochs.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any TrainConfig field. Repeatable.")
@click.option("--allow-missing", is_flag=True, help="Prepare a partial download (missing images counted).")
@click.option("--policy", default=None,
              help="Recipes with uncertainty policies (chexpert): one policy, 'all' (the paper's five, compared on "
                   "the same split) or 'paper' (its per-finding final choice) [default: paper; --demo: all].")
def reproduce(paper, data_dir, out_dir, split, dry_run, demo, weights, epochs, sets, allow_missing, policy):
    """prepare -> train -> evaluate with a paper's recipe, ending in OUT/report.md beside the
    paper's published table.

    Example: cxr-tf reproduce chexnet --demo --out runs/demo"""
    from cxr_tf.studies.reproduce import reproduce as run

    overrides = train_settings(named={"weights": weights, "epochs": epochs}, sets=sets)
    res = run(paper, out_dir, data_dir, split=split, demo=demo, dry_run=dry_run, allow_missing=allow_missing,
              overrides=overrides, callbacks=None if dry_run else _cam_callbacks, policy=policy)
    if dry_run:
        click.echo(res["table"])
        return
    auroc = res["mean_auroc"]
    text = f"{auroc:.4f}" if isinstance(auroc, float) else ", ".join(f"{k} {v:.4f}" for k, v in auroc.items())
    click.echo(f"mean AUROC {text} in {res['seconds'] / 60:.1f} min; report: {res['report']}")


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the ensemble.")
@click.option("--top-k", default=None, type=int,
              help="From each run directory, its K best checkpoints on disk [default: its model.keras].")
@click.option("--by", default="mean_auroc", show_default=True, type=of("cxr_tf.evaluation.run_ensemble", "BY"),
              help="How checkpoints are ranked: mean validation AUROC (over --tasks when given), or val_loss.")
@click.option("--tasks", default=None, help="Comma-separated findings whose mean AUROC ranks checkpoints.")
def ensemble(sources, out_dir, top_k, by, tasks):
    """Average several runs (RUN_DIR or model.keras), or the top-k checkpoints of runs, into one
    model.keras that evaluate, predict, explain and localize take like any other.

    Example: cxr-tf ensemble runs/seed0 runs/seed1 runs/seed2 --out runs/ensemble"""
    from cxr_tf.evaluation.run_ensemble import build_ensemble

    task_list = [t.strip() for t in tasks.split(",")] if tasks else None
    res = build_ensemble(sources, out_dir, top_k=top_k, by=by, tasks=task_list)
    for m in res["members"]:
        click.echo(f"  {m['path']}" + (f"  epoch {m['epoch']} score {m['score']:.4f}" if m["epoch"] else ""))
    click.echo(f"ensemble of {len(res['members'])} model(s): {res['model']}")


@click.command("export")
@click.argument("model_or_run", type=click.Path(exists=True))
@click.option("--format", "fmt", required=True, type=click.Choice(["savedmodel", "litert", "onnx"]),
              help="savedmodel (TF Serving), litert (.tflite) or onnx.")
@click.option("--out", "out", required=True, type=click.Path(), help="The SavedModel folder, .tflite or .onnx file.")
@click.option("--atol", default=1e-4, show_default=True, help="Largest difference from Keras allowed.")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also check on this image (repeatable); random pixels are always checked.")
def export_command(model_or_run, fmt, out, atol, images):
    """Export a model (a .keras file or a run directory) as SavedModel, LiteRT or ONNX, checked
    against Keras on raw-pixel input before it is kept; the finding names travel with it.

    Example: cxr-tf export runs/nih_densenet --format onnx --out model.onnx"""
    from cxr_tf.interop.export import export

    r = export(model_or_run, fmt, out, atol=atol, images=images)
    click.echo(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB) in {r['convert_s']:.1f} s; max difference from "
               f"Keras {r['max_abs_diff']:.2e} on {r['images_checked']} images; "
               f"{1e3 * r['export_s_per_image']:.2f} ms/image vs Keras {1e3 * r['keras_s_per_image']:.2f} ms/image")


@click.command("import-weights")
@click.argument("source", type=of("cxr_tf.interop.weights", "SOURCES"))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The .keras model to write.")
@click.option("--image-size", default=224, show_default=True, help="Input side of the Keras model in pixels.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow a checkpoint that pickles code (unpickling runs it): only for a file you trust.")
@click.option("--records", default=None, type=click.Path(exists=True, file_okay=False),
              help="Make OUT a run directory on these records, for `cxr-tf evaluate --run OUT`.")
def import_command(source, checkpoint, out, image_size, trust_checkpoint, records):
    """A PyTorch DenseNet121 checkpoint (arnoweng/CheXNet, jrzech/reproduce-chexnet, torchxrayvision)
    as a cxr_tf Keras model with its findings, head and normalization.

    Example: cxr-tf import-weights arnoweng model.pth.tar --out chexnet.keras"""
    from cxr_tf.interop.weights import import_weights

    r = import_weights(source, checkpoint, out, trust=trust_checkpoint, image_size=image_size, records=records)
    click.echo(f"wrote {r['out']}: {len(r['findings'])} findings from {r['tensors']} tensors of {source}")


def register(group: click.Group) -> None:
    """Add the model commands to the ``cxr-tf`` group."""
    for cmd in (train, evaluate, predict, reproduce, ensemble, export_command, import_command):
        group.add_command(cmd)
