"""The report labeler: ``cxr-tf label INPUT --out LABELED.csv``."""

from __future__ import annotations

import logging

import click

from cxr_tf.cli.common import of

log = logging.getLogger(__name__)

# What `label --uncertain-as` writes for an uncertain mention (chestxray14 vocabulary).
MAPPINGS = ("negative", "positive", "uncertain")


@click.command("label")
@click.argument("input_path", type=click.Path(exists=True))
@click.option("--out", "out_csv", required=True, type=click.Path(dir_okay=False), help="Labeled CSV to write.")
@click.option("--vocabulary", "vocab", default="chexpert", show_default=True,
              type=of("cxr_tf.label.engine", "VOCABULARIES"),
              help="chexpert: 14 observations, 1/0/-1/blank; chestxray14: 14 NIH findings and No Finding.")
@click.option("--sections", default=None, type=of("cxr_tf.label.sections", "CHOICES"),
              help="impression: impression, else findings, else the last paragraph (MIMIC-CXR's order); "
                   "findings,impression: both; all: the whole text. [default: the vocabulary's: impression "
                   "for chexpert, findings,impression for chestxray14]")
@click.option("--column", default=None, help="The report column of a CSV with a header.")
@click.option("--uncertain-as", "uncertain_as", default=None, type=click.Choice(MAPPINGS),
              help="chestxray14 only: what an uncertain mention is written as (chexpert always writes -1). "
                   "Not a training policy: that is `cxr-tf train --uncertain`.  [default: negative]")
@click.option("--uncertain", "uncertain_old", default=None, type=click.Choice(MAPPINGS), hidden=True,
              help="Deprecated spelling of --uncertain-as.")
@click.option("--explain", "explain", default=None, type=click.Path(dir_okay=False),
              help="Also write the audit trail here (JSON lines): for each report and each mention, the "
                   "sentence, the matched phrase, the trigger and the rule that decided.")
@click.option("--workers", default=1, show_default=True, type=int, help="Processes.")
def label(input_path, out_csv, vocab, sections, column, uncertain_as, uncertain_old, explain, workers):
    """Label free-text reports: a headerless report CSV (the CheXpert labeler's convention), a CSV
    with --column, a folder of .txt reports, or the MIMIC-CXR reports zip or tree.

    Example: cxr-tf label reports.csv --out labels.csv --vocabulary chexpert"""
    from cxr_tf.label import label_file

    if uncertain_old is not None:
        log.warning("cxr-tf label --uncertain is deprecated: use --uncertain-as (it maps uncertain mentions "
                    "in the output; `cxr-tf train --uncertain` is the training policy)")
        if uncertain_as is None:
            uncertain_as = uncertain_old
    uncertain = uncertain_as or "negative"

    s = label_file(input_path, out_csv, vocab=vocab, sections=sections, column=column,
                   uncertain=uncertain if vocab == "chestxray14" else "uncertain", workers=workers,
                   explain=explain)
    click.echo(f"labeled {s['reports']} reports ({s['input']}, sections {s['sections']}) into {out_csv}: "
               f"{s['positive']} positive, {s['uncertain']} uncertain, {s['negative']} negative mentions")
    if explain:
        click.echo(f"audit trail: {explain}")


def register(group: click.Group) -> None:
    """Add the label command to the ``cxr-tf`` group."""
    group.add_command(label)
