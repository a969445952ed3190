"""OpenI, the Indiana University chest X-ray collection, on disk (see ``datasets/openi/card.toml``)
-> one manifest row per image, labels from the reports, and the reports as a side table.

The release is report XMLs (``ecgen-radiology/N.xml``, or ``NLMCXR_reports.tgz`` not unpacked) and
the images, PNG (``NLMCXR_png/<image id>.png``, or the PNGs straight in ``data_dir``) or DICOM
(``NLMCXR_dcm/**/<n>_IM-xxxx-xxxx.dcm``); which one is detected (``release=auto``). Each XML is one
study (``CXRn``) naming its images in ``parentImage`` elements; a report without images gives no
row (counted). There are no patient ids: the report stands in for the patient (``patient`` =
``study`` = ``CXRn``). There is no label table either: the FINDINGS and IMPRESSION sections, joined
as ``FINDINGS: ... IMPRESSION: ...`` (the CheXpert labeler's input convention), are labelled by
cxr-tf's rule labeler (:func:`cxr_tf.label.label_reports`, ``vocabulary=chestxray14`` or
``chexpert``), recorded in the ``label_source`` column; the MeSH codes are kept as ``mesh_major`` and
``mesh_automatic``. ``view`` comes from ``nlmcxr_dicom_metadata.csv(.gz)`` when present (one image
of the release, CXR1000_IM-0003-1001, is not in it: blank), else from the DICOM headers of the
DICOM release, else it is blank. Splits are by report: ``official`` is the card's fixed-seed split.
"""

from __future__ import annotations

import logging
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrImageError
from cxr_tf.core.progress import progress
from cxr_tf.label import LABELER, SECTIONS, default_sections, label_reports
from cxr_tf.sources import splits
from cxr_tf.sources.base import SourceData, begin, find_file, finish, random_split
from cxr_tf.sources.base import card as _card
from cxr_tf.vocab.findings import vocabulary as card_vocabulary

log = logging.getLogger(__name__)
NAME = "openi"
OPTIONS = {
    "release": "auto (default), png or dcm: which image release --data-dir holds",
    "vocabulary": "chestxray14 (default: the 14 NIH findings) or chexpert (the 14 CheXpert observations): "
                  "the labeler vocabulary, and so the manifest's findings",
    "uncertain": "chestxray14 only: a hedged mention is uncertain (default, -1), negative (0, as the NIH "
                 "text mining) or positive (1)",
    "sections": "the report sections labelled: findings,impression, impression or all [default: the vocabulary's]",
    "views": "all (default), frontal (PA, AP) or lateral: needs the view (metadata table or DICOM headers)",
    "metadata": "the DICOM header dump nlmcxr_dicom_metadata.csv(.gz) [default: found in --data-dir]",
    "fractions": "random split: report fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
RELEASES = ("auto", "png", "dcm")
VIEWS = ("all", "frontal", "lateral")
# The side table reports.csv: one row per study of the manifest.
TABLE_COLUMNS = ["patient", "study", "report_path", "comparison", "indication", "findings", "impression", "report",
                 "mesh_major", "mesh_automatic", "images"]


def card() -> dict:
    """The OpenI dataset card."""
    return _card(NAME)


def _natural(name: str):
    """Sort key: ``2.xml`` before ``10.xml``."""
    stem = Path(name).stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def parse_report(data: bytes, where: str) -> dict:
    """One report XML -> ``study`` (the uId, ``CXRn``), its ``comparison``, ``indication``,
    ``findings`` and ``impression`` texts, ``mesh_major`` and ``mesh_automatic`` codes (lists) and
    ``images`` (the parentImage ids, in order). Errors name the file (and the line of bad XML)."""
    layout = card()["layout"]
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise CxrDataError(where, f"line {exc.position[0]}: not well-formed XML ({exc})") from None
    if root.tag != "eCitation":
        raise CxrDataError(where, f"not an Open-i report: the root element is <{root.tag}>, expected <eCitation>")
    uid = root.find("uId")
    study = (uid.get("id") or "").strip() if uid is not None else ""
    if not re.match(layout["report_id_pattern"], study):
        raise CxrDataError(where, f"<uId id=...> is {study!r}, expected CXRn")
    sections = {}
    for el in root.iter("AbstractText"):
        sections[(el.get("Label") or "").strip().upper()] = "".join(el.itertext()).strip()
    images, pattern = [], re.compile(layout["image_id_pattern"])
    for node in root.findall("parentImage"):
        image = (node.get("id") or "").strip()
        m = pattern.match(image)
        if not m or f"CXR{m['report']}" != study:
            raise CxrDataError(where, f"parentImage id {image!r} is not {study}_IM-xxxx-xxxx (an image of this report)")
        images.append(image)
    return {"study": study, **{k.lower(): sections.get(k, "") for k in ("COMPARISON", "INDICATION", "FINDINGS",
                                                                       "IMPRESSION")},
            "mesh_major": [(m.text or "").strip() for m in root.findall("MeSH/major")],
            "mesh_automatic": [(m.text or "").strip() for m in root.findall("MeSH/automatic")],
            "images": images}


def report_text(rec: dict) -> str:
    """``FINDINGS: ... IMPRESSION: ...`` (an empty section left out, as in the labeler's input)."""
    return " ".join(f"{s}: {rec[s.lower()]}" for s in card()["labeler"]["sections"] if rec[s.lower()])


def read_reports(data_dir: Path, files: dict) -> list[dict]:
    """Every report of ``ecgen-radiology/`` (or of ``NLMCXR_reports.tgz``), in report-number order,
    each with its ``report_path``; a report id or image id seen twice is an error naming both files."""
    layout = card()["layout"]
    folder, archive = data_dir / layout["reports_dir"], data_dir / layout["reports_archive"]
    found: list[tuple[str, str, bytes]] = []       # (where, report_path, bytes)
    if folder.is_dir():
        paths = sorted((p for p in folder.glob("*.xml") if p.is_file()), key=lambda p: _natural(p.name))
        found = [(str(p), f"{layout['reports_dir']}/{p.name}", p.read_bytes()) for p in paths]
        files["reports"] = str(folder)
        where = folder
    elif archive.is_file():
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")
                                  and not Path(m.name).name.startswith(".")), key=lambda m: _natural(m.name))
                found = [(f"{archive}:{m.name}", f"{layout['reports_dir']}/{Path(m.name).name}",
                          tar.extractfile(m).read()) for m in members]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CxrDataError(archive, f"cannot read the reports archive: {exc}") from None
        files["reports"] = str(archive)
        where = archive
    else:
        raise CxrDataError(data_dir, f"no {layout['reports_dir']}/ (report XMLs) and no {layout['reports_archive']}; "
                                     f"--data-dir is the folder where NLMCXR_reports.tgz was unpacked")
    if not found:
        raise CxrDataError(where, "no report XMLs (*.xml) here")
    out, by_study, by_image = [], {}, {}
    for source, rel, data in found:
        rec = parse_report(data, source)
        if rec["study"] in by_study:
            raise CxrDataError(source, f"report {rec['study']} is also {by_study[rec['study']]}")
        by_study[rec["study"]] = source
        for image in rec["images"]:
            if image in by_image:
                raise CxrDataError(source, f"image {image} is also listed by {by_image[image]}")
            by_image[image] = source
        out.append({**rec, "report_path": rel})
    return out


def read_metadata(path: Path) -> pd.DataFrame:
    """The DICOM header dump -> ``view`` and ``photometric`` by image id (blanks kept as "")."""
    cols = card()["layout"]["metadata_columns"]
    wanted = set(cols.values())
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c.strip() in wanted)
    except (OSError, EOFError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CxrDataError(path, f"cannot read: {exc}") from None
    frame.columns = [c.strip() for c in frame.columns]
    absent = [c for c in (cols["image"], cols["view"]) if c not in frame.columns]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent} (a DICOM header dump has imageid and View Position)")
    frame = frame.rename(columns={v: k for k, v in cols.items()})
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
    dup = frame["image"].duplicated()
    if dup.any():
        raise CxrDataError(path, f"image {frame.loc[dup, 'image'].iloc[0]!r} has more than one row "
                                 f"(line {int(np.flatnonzero(dup.to_numpy())[0]) + 2})")
    return frame.set_index("image").reindex(columns=["view", "photometric"], fill_value="")


def _labels(texts: list[str], vocab: str, uncertain: str, sections, findings) -> pd.DataFrame:
    """The labeler's output for each report text, one float column per finding (by name)."""
    if sections is not None and sections not in SECTIONS:
        raise CxrConfigError(f"unknown sections {sections!r}", key="sections", choices=SECTIONS)
    labels = label_reports(texts, vocab, sections=sections, uncertain=uncertain)
    return labels[list(findings)].astype(np.float32).reset_index(drop=True)


def _image_paths(data_dir: Path, images: pd.Series, release: str, files: dict) -> tuple[list[str], str]:
    """The relative path of each image in the detected (or chosen) release, and the release."""
    layout = card()["layout"]
    if release not in RELEASES:
        raise CxrConfigError(f"unknown release {release!r}", key="release", choices=RELEASES)
    png_dir = next((d for d in layout["png_dirs"] if next((data_dir / d).glob("CXR*_IM-*.png"), None)), None)
    dcm_root = data_dir / layout["dcm_dir"]
    if release == "auto":
        release = "dcm" if png_dir is None and dcm_root.is_dir() else "png"
    if release == "png":
        folder = png_dir if png_dir is not None else layout["png_dirs"][0]
        files["images"] = str(data_dir / folder)
        prefix = "" if folder == "." else f"{folder}/"
        return [f"{prefix}{i}.png" for i in images], release
    index = {p.name: p.relative_to(data_dir).as_posix() for p in dcm_root.rglob("*.dcm")} if dcm_root.is_dir() else {}
    files["images"] = str(dcm_root)
    names = [f"{i[3:]}.dcm" for i in images]       # the DICOM names drop the "CXR" of the image id
    return [index.get(n, f"{layout['dcm_dir']}/{n}") for n in names], release


def _header_views(data_dir: Path, paths) -> list[str]:
    """ViewPosition read from each DICOM header ("" for a file not on disk: it is reported missing)."""
    from cxr_tf.dicom.display import read_header

    out = []
    for rel in progress(list(paths), desc="openi: DICOM headers", unit="file"):
        full = data_dir / rel
        try:
            out.append(str(read_header(full).get("view") or "").strip() if full.is_file() else "")
        except CxrImageError as exc:
            log.warning("%s", exc)
            out.append("")
    return out


def _filter_views(frame: pd.DataFrame, views: str, excluded: dict, where) -> pd.DataFrame:
    """Keep the requested views; the rows left out are counted in ``excluded``."""
    if views not in VIEWS:
        raise CxrConfigError(f"unknown views {views!r}", key="views", choices=VIEWS)
    if views == "all":
        return frame
    if (frame["view"] == "").all():
        raise CxrDataError(where, f"views={views} needs each image's view: put {card()['layout']['metadata']}.gz "
                                  "here (or pass metadata=FILE), or read the DICOM release")
    keep = frame["view"].isin(card()["layout"]["views"][views])
    excluded[f"views={views}"] = int((~keep).sum())
    return frame[keep].reset_index(drop=True)


def load(data_dir, split: str = "official", seed: int | None = None, release: str = "auto",
         vocabulary: str | None = None, uncertain: str | None = None, sections: str | None = None,
         views: str = "all", metadata=None, fractions=None) -> SourceData:
    """Read an OpenI folder into a manifest split by report (see the module doc)."""
    data_dir, c, _, seed = begin(NAME, data_dir, seed)
    lab = c["labeler"]
    vocab = vocabulary or lab["default"]
    if vocab not in lab["vocabularies"]:
        raise CxrConfigError(f"unknown vocabulary {vocab!r}", key="vocabulary", choices=tuple(lab["vocabularies"]))
    if uncertain is not None and (vocab != "chestxray14" or uncertain not in lab["uncertain"]):
        raise CxrConfigError(f"uncertain={uncertain!r}: the chestxray14 vocabulary takes one of {lab['uncertain']}; "
                             "chexpert keeps its uncertain labels (-1)", key="uncertain", choices=lab["uncertain"])
    findings = _vocabulary_findings(vocab)
    files, excluded = {}, {}
    reports = read_reports(data_dir, files)
    texts = [report_text(r) for r in reports]
    uncertain = uncertain or lab["uncertain"][0]
    labels = _labels(texts, vocab, uncertain, sections, findings)
    files["labeler"] = (f"{LABELER} ({vocab}, sections={sections or default_sections(vocab)}"
                        + (f", uncertain={uncertain})" if vocab == "chestxray14" else ")"))

    rows = [(r["study"], image, k) for k, r in enumerate(reports) for image in r["images"]]
    images = pd.DataFrame(rows, columns=["study", "image_id", "report"])
    counts = {"reports": len(reports), "images": len(images),
              "reports_without_images": sum(not r["images"] for r in reports),
              "reports_without_text": sum(not t for t in texts)}
    paths, kind = _image_paths(data_dir, images["image_id"], release, files)
    files["release"] = f"Open-i NLMCXR_{kind}"
    view = photometric = [""] * len(images)
    meta_path = Path(metadata) if metadata else find_file(data_dir, c["layout"]["metadata"])
    if metadata and not meta_path.is_file():
        raise CxrDataError(meta_path, "metadata file not found")
    if meta_path is not None:
        meta = read_metadata(meta_path).reindex(images["image_id"])
        files["metadata"] = str(meta_path)
        counts["images_in_metadata"] = int(meta["view"].notna().sum())
        if counts["images_in_metadata"] < len(images):
            log.warning("%s: %d of %d images are not in it (their view is blank)", meta_path,
                        len(images) - counts["images_in_metadata"], len(images))
        view, photometric = meta["view"].fillna("").to_numpy(), meta["photometric"].fillna("").to_numpy()
    elif kind == "dcm":
        view = _header_views(data_dir, paths)
    files["views"] = "metadata table" if meta_path else "DICOM headers" if kind == "dcm" else "none (blank)"

    table = pd.DataFrame(
        [{"patient": r["study"], "study": r["study"], "report_path": r["report_path"],
          **{k: r[k] for k in ("comparison", "indication", "findings", "impression")}, "report": t,
          "mesh_major": "|".join(r["mesh_major"]), "mesh_automatic": "|".join(r["mesh_automatic"]),
          "images": len(r["images"])} for r, t in zip(reports, texts)],
        columns=TABLE_COLUMNS)
    at = images["report"].to_numpy()
    frame = pd.DataFrame({"path": paths, "image_id": images["image_id"], "patient": images["study"],
                          "study": images["study"], "view": view, "age": np.nan, "sex": ""})
    frame = pd.concat([frame, labels.iloc[at].reset_index(drop=True)], axis=1)
    frame = frame.assign(label_source=f"labeler:{vocab}", label_method="nlp", photometric=photometric,
                         **{k: table[k].to_numpy()[at] for k in ("mesh_major", "mesh_automatic", "report_path")})
    frame = _filter_views(frame, views, excluded, data_dir)

    if split == "official":
        sp = c["splits"]
        frame = splits.random_split(frame, sp["official_fractions"], seed=sp["official_seed"])
    else:
        frame = random_split(frame, split, seed, fractions, c)
    data = finish(NAME, data_dir, frame, findings, data_dir, files=files, release_counts=counts, excluded=excluded)
    data.tables["reports"] = table[table["study"].isin(set(data.manifest["study"]))].reset_index(drop=True)
    return data


def _vocabulary_findings(vocab: str) -> tuple[str, ...]:
    """The manifest's findings for a labeler vocabulary (the card list it names)."""
    return card_vocabulary(NAME, card()["labeler"]["vocabularies"][vocab]).findings
