"""The DICOM command: ``cxr-tf dicom PATH... --out OUT`` (metadata, de-identification, images)."""

from __future__ import annotations

import click

from cxr_tf.cli.common import BEAM_OPTION_HELP, RUNNER_HELP


@click.command("dicom")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--png", "image_format", flag_value="png", help="Also write display-ready 8-bit PNGs.")
@click.option("--jpg", "image_format", flag_value="jpg", help="Also write display-ready JPEGs (quality 95).")
@click.option("--keep-phi", is_flag=True,
              help="Keep identifiers (names, IDs, dates, UIDs, ...) in the output. Off by default: output is "
                   "de-identified (DICOM PS3.15 Basic Application Level Confidentiality Profile).")
@click.option("--salt", envvar="CXR_TF_DEID_SALT", default=None, metavar="SECRET",
              help="Key of the pseudonyms (HMAC-SHA256): the same salt maps a patient or UID to the same "
                   "pseudonym in every run [env CXR_TF_DEID_SALT; default: a random salt, not linkable].")
@click.option("--workers", default=None, type=int,
              help="Processes [default: all cores]; with --runner beam, the DirectRunner's processes.")
@click.option("--runner", default="pool", show_default=True, type=click.Choice(("pool", "beam")),
              help=RUNNER_HELP + " The same salt gives the same metadata.csv and pseudonyms with either.")
@click.option("--beam-option", "beam_options", multiple=True, metavar="KEY=VALUE", help=BEAM_OPTION_HELP)
def dicom(paths, out_dir, image_format, keep_phi, salt, workers, runner, beam_options):
    """Read DICOM files (or folders of them) into OUT/metadata.csv, one row per file, de-identified
    by default; unreadable files are listed with the reason in OUT/errors.csv.

    Example: cxr-tf dicom /data/dicoms --salt "$SALT" --out runs/deid --png
    (on Beam: add --runner beam, and --beam-option runner=FlinkRunner --beam-option flink_master=HOST:8081)"""
    from cxr_tf.core.beam import parse_options
    from cxr_tf.dicom.tool import convert

    if beam_options and runner != "beam":
        raise click.UsageError("--beam-option needs --runner beam")
    s = convert(paths, out_dir, image_format=image_format, keep_phi=keep_phi, salt=salt, workers=workers,
                runner=runner, beam_options=parse_options(beam_options))
    click.echo(f"converted {s['converted']} of {s['files']} file(s) into {out_dir}/metadata.csv"
               + (f" and {out_dir}/images/" if image_format else ""))
    if s["failed"]:
        click.echo(f"failed: {s['failed']} (see {out_dir}/errors.csv)")
    if keep_phi:
        click.echo("identifiers kept (--keep-phi): the output is not de-identified")
    elif s["random_salt"]:
        click.echo("de-identified with a random salt: pseudonyms will not match another run's (use --salt)")


def register(group: click.Group) -> None:
    """Add the DICOM command to the ``cxr-tf`` group."""
    group.add_command(dicom)
