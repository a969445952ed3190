"""Data commands: ``synth``, ``prepare``, ``merge``, ``summary``, ``datasets``, ``stats``."""

from __future__ import annotations

import json

import click

from cxr_tf.cli.common import BEAM_OPTION_HELP, RUNNER_HELP, LazyChoice, datasets, of


def _synth_names():
    from cxr_tf import sources
    return sources.synth_names()


@click.command()
@click.argument("dataset", type=LazyChoice(_synth_names))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--n", "n_images", default=600, show_default=True, help="Number of images.")
@click.option("--patients", default=None, type=int,
              help="Number of patients [default: the writer's: n/3, or one per image for the releases with "
                   "one image per patient].")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Random seed (output is deterministic).")
@click.option("--dicom", is_flag=True, help="Write the dataset's DICOM release (mimic: MIMIC-CXR) instead.")
def synth(dataset, out_dir, n_images, patients, size, seed, dicom):
    """Write a phantom DATASET in its real on-disk layout into OUT_DIR (e.g. chestxray14: Data_Entry,
    BBox list, official lists, images_0NN/images/; mimic: MIMIC-CXR-JPG, or MIMIC-CXR with --dicom).

    Example: cxr-tf synth chestxray14 runs/nih_phantom --n 600 --size 256"""
    import inspect

    from cxr_tf.core.errors import CxrConfigError
    from cxr_tf.sources import synth_writer

    writer = synth_writer(dataset)
    extra = {}
    if dicom:
        if "dicom" not in inspect.signature(writer).parameters:
            raise CxrConfigError(f"{dataset} has no DICOM release to synthesize", key="dicom")
        extra["dicom"] = True
    info = writer(out_dir, n_images=n_images, n_patients=patients, size=size, seed=seed, **extra)
    click.echo(f"wrote {info['images']} images of {info['patients']} patients "
               f"({info.get('boxes', 0)} boxes) to {out_dir}; prepare with --data-dir {info.get('data_dir', out_dir)}")


def _options(pairs, extra=()) -> dict:
    """``--option KEY=VALUE`` pairs, and source options written as flags (``--labels negbio``,
    ``--limit-studies=100``), -> a dict; values read as TOML (numbers, lists, strings)."""
    from cxr_tf.core.settings import parse_value
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        out[key.strip()] = parse_value(raw)
    args = list(extra)
    while args:
        flag = args.pop(0)
        if not flag.startswith("--") or len(flag) < 3:
            raise click.UsageError(f"unexpected argument {flag!r}")
        name, sep, raw = flag[2:].partition("=")
        if not sep:
            if not args or args[0].startswith("--"):
                raise click.BadParameter(f"{flag} needs a value", param_hint=flag)
            raw = args.pop(0)
        out[name.replace("-", "_")] = parse_value(raw)
    return out


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dataset", type=datasets())
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The dataset in its real on-disk layout.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Records directory to write.")
@click.option("--split", default="official", show_default=True,
              type=of("cxr_tf.sources.splits", "METHODS"),
              help="official: the dataset's own split (validation carved out by patient); random: patient-level.")
@click.option("--size", default=256, show_default=True, help="Stored image side in pixels.")
@click.option("--aspect", default="pad", show_default=True, type=of("cxr_tf.imaging.geometry", "ASPECTS"),
              help="How non-square images become square (recorded per image).")
@click.option("--encoding", default="png", show_default=True, type=of("cxr_tf.records.writer", "ENCODINGS"),
              help="Storage format of the resized images (png is lossless).")
@click.option("--workers", default=None, type=int,
              help="Writer processes [default: all cores]; with --runner beam, the DirectRunner's processes.")
@click.option("--runner", default="pool", show_default=True, type=of("cxr_tf.core.beam", "RUNNERS"),
              help=RUNNER_HELP + " Both write the same manifest, examples per split and summary.json "
                   "from the same shard plan (boundaries equal today; the format does not rely on it).")
@click.option("--beam-option", "beam_options", multiple=True, metavar="KEY=VALUE", help=BEAM_OPTION_HELP)
@click.option("--images-per-shard", default=512, show_default=True, help="Most images per TFRecord shard.")
@click.option("--training-workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Machines that will train on these records together (MultiWorkerMirroredStrategy): each split "
                   "gets at least 8 shards per worker (fewer only when it has fewer images), so sharding by file "
                   "gives every worker a near-equal share.")
@click.option("--seed", default=None, type=int, help="Split and shard-order seed [default: the card's].")
@click.option("--allow-missing", is_flag=True,
              help="Skip images that are absent or unreadable; they are counted and reported.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A source option (see `cxr-tf datasets`), e.g. val_fraction=0.2; also written as a flag: "
                   "--val-fraction 0.2, --labels negbio, --recipe mimic-jpg. Repeatable.")
@click.pass_context
def prepare(ctx, dataset, data_dir, out_dir, split, size, aspect, encoding, workers, runner, beam_options,
            images_per_shard, training_workers, seed, allow_missing, options):
    """Source layout -> manifest -> sharded TFRecords, manifest.csv and summary.json in OUT.
    Source options (`cxr-tf datasets` lists them) go as -o KEY=VALUE or as --key value.

    Example: cxr-tf prepare chestxray14 --data-dir /data/nih --out runs/nih_records --size 256
    (on Beam: add --runner beam --workers 8, or --runner beam --beam-option runner=FlinkRunner
    --beam-option flink_master=HOST:8081)"""
    from cxr_tf.core.beam import parse_options
    from cxr_tf.records.prepare import prepare as run

    if beam_options and runner != "beam":
        raise click.UsageError("--beam-option needs --runner beam")
    s = run(dataset, data_dir, out_dir, split=split, size=size, aspect=aspect, workers=workers,
            allow_missing=allow_missing, encoding=encoding, images_per_shard=images_per_shard,
            seed=seed, options=_options(options, ctx.args), training_workers=training_workers, runner=runner,
            beam_options=parse_options(beam_options))
    c = s["counts"]
    click.echo(f"wrote {c['written_images']} of {c['listed_images']} listed images to {out_dir}")
    for split_name, part in s["splits"].items():
        click.echo(f"  {split_name:5s} {part['images']:7d} images  {part['patients']:6d} patients")
    files = s.get("files", {})
    if "test_split_labels" in files:
        click.echo(f"labels: {files.get('labels')}; the test split carries {files['test_split_labels']} labels")
    for name, file in s.get("tables", {}).items():
        click.echo(f"side table {name}: {out_dir}/{file}")
    for rule, n in c.get("excluded_by_filter", {}).items():
        click.echo(f"excluded by {rule}: {n} listed image(s) (see summary.json)")
    if c["missing_images"] or c["unreadable_images"]:
        click.echo(f"skipped: {c['missing_images']} missing, {c['unreadable_images']} unreadable "
                   f"(see {out_dir}/skipped.csv)")
        for u in s["unreadable"][:10]:
            click.echo(f"  {u['reason']}")


@click.command()
@click.argument("records_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Records directory to write (the merged one).")
@click.option("--approximate", is_flag=True,
              help="Also join the crosswalk's approximate pairs (e.g. NIH Infiltration with Lung Opacity).")
def merge(records_dirs, out_dir, approximate):
    """Merge the records directories of several datasets into OUT, on one label set through the
    crosswalk. A finding a dataset does not label stays blank: train with --set blank=ignore --set
    loss=masked_bce --set findings=records; evaluate reports per dataset.

    Example: cxr-tf merge runs/nih_rec runs/chexpert_rec runs/padchest_rec --out runs/merged"""
    from cxr_tf.records.merge import merge as run

    s = run(records_dirs, out_dir, approximate=approximate)
    per = ", ".join(f"{d} {n}" for d, n in s["counts"]["per_dataset"].items())
    click.echo(f"merged {s['counts']['written_images']} images ({per}) into {out_dir}: {len(s['findings'])} findings")
    for dataset, names in s["crosswalk"].items():
        for finding, union in names.items():
            click.echo(f"  {dataset}: {finding} -> {union}")
    for split_name, part in s["splits"].items():
        click.echo(f"  {split_name:5s} {part['images']:7d} images  {part['patients']:6d} patients")


@click.command()
@click.argument("records_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--verify", is_flag=True,
              help="Instead, read every shard and check it against the size and CRC-32C checksum in summary.json "
                   "(records older than schema 3: each record's own CRCs); names each bad shard, exits 1 if any.")
def summary(records_dir, verify):
    """Print a records directory's summary.json (without the per-image sizes), or with --verify check
    its shards after a copy between machines or buckets.

    Example: cxr-tf summary runs/nih_records --verify"""
    from cxr_tf.records.reader import load_summary

    if verify:
        from cxr_tf.records.integrity import FIX, has_checksums, verify as check
        from cxr_tf.records.reader import RecordsDir

        rec = RecordsDir(records_dir)
        bad = check(rec)
        how = "size and CRC-32C" if has_checksums(rec) else "size and record CRCs"
        if not bad:
            click.echo(f"all {len(rec.summary['shards'])} shards match summary.json ({how})")
            return
        for b in bad:
            click.echo(f"bad shard {rec.path / b.name}: {b.problem}", err=True)
        click.echo(f"{len(bad)} of {len(rec.summary['shards'])} shards are bad; {FIX}", err=True)
        raise SystemExit(1)
    s = load_summary(records_dir)
    s.pop("image_sizes", None)
    click.echo(json.dumps(s, indent=2))


@click.command("datasets")
@click.option("--options", "show_options", is_flag=True, help="Also list each source's options.")
def list_datasets(show_options):
    """The registered datasets, from their cards: images and patients of the full release, labels
    and how they were made, views, boxes and masks, splits and licence.

    Example: cxr-tf datasets --options"""
    from cxr_tf.core import cards
    from cxr_tf import sources

    for name in sources.names():
        card = cards.dataset_card(name)
        counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in card.get("expected", {}).items()
                           if isinstance(v, int))
        click.echo(f"{name}: {card.get('title', '')}")
        click.echo(f"  release:  {counts}")
        click.echo(f"  labels:   {len(card['findings'])} findings; {card.get('label_method', '')}")
        click.echo(f"  views:    {card.get('views', '')}")
        kinds = " and ".join(card.get("annotations", [])) or "none"
        note = card.get("annotations_note", "")
        click.echo(f"  boxes, masks: {kinds}{'; ' + note if note and note != 'none' else ''}")
        click.echo(f"  splits:   {card['splits'].get('official_description', '')}")
        click.echo(f"  licence:  {card.get('license', '')}")
        click.echo(f"  folder {cards.card_path('datasets', name).parent}; TFDS builder {card['tfds']['name']}")
        if show_options:
            for key, text in sources.get(name).OPTIONS.items():
                click.echo(f"  --{key.replace('_', '-')} ...  {text}")


@click.command("stats")
@click.option("--dataset", default=None, type=datasets(), help="The dataset (with --data-dir, or for a bare manifest).")
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="The dataset in its real layout: the whole label file is described.")
@click.option("--manifest", "manifest_csv", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A manifest.csv (of a records directory) instead.")
@click.option("--out", "out_dir", default="stats", show_default=True, type=click.Path(file_okay=False),
              help="Folder for stats.md, the tables and the figures.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A source option, as for prepare (e.g. views=all). Repeatable.")
def stats_command(dataset, data_dir, manifest_csv, out_dir, options):
    """Descriptive statistics (stats.md, CSV tables, PNG figures) of a dataset's label file or a
    manifest. The images need not be there: absent ones are counted.

    Example: cxr-tf stats --dataset padchest --data-dir /data/padchest -o views=all"""
    from cxr_tf.studies.stats import stats

    c = stats(out_dir, dataset=dataset, data_dir=data_dir, manifest=manifest_csv, options=_options(options, ()))
    absent = c["images"] - c["images_on_disk"]
    click.echo(f"{c['images']:,} images ({c['images_on_disk']:,} on disk, {absent:,} absent), "
               f"{c['patients']:,} patients, {c['studies']:,} studies, {c['positive_findings']:,} positive findings; "
               f"patients shared between splits: {c['shared_patients']}; wrote {out_dir}/stats.md")
    if c["label_file"]:           # what the source counted in the release's files, before any filter
        click.echo("label file: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c["label_file"].items()))
    for rule, n in c["excluded_by_filter"].items():
        click.echo(f"excluded by {rule}: {n:,} listed image(s)")


def register(group: click.Group) -> None:
    """Add the data commands to the ``cxr-tf`` group."""
    for cmd in (synth, prepare, merge, summary, list_datasets, stats_command):
        group.add_command(cmd)
