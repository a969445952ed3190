"""MIMIC-CXR-JPG and MIMIC-CXR (DICOM) on disk (see ``datasets/mimic/card.toml``) -> one manifest.

Which release ``data_dir`` holds is detected (``release=auto``): the JPG release has
``mimic-cxr-2.0.0-metadata.csv(.gz)`` and ``files/**.jpg``; the DICOM release has
``cxr-record-list.csv(.gz)``, ``files/**.dcm`` and the reports. Both give the same manifest for
the same images (only ``path`` differs), one row per image: ``image_id`` is the dicom_id,
``patient`` the subject_id, ``study`` the study_id, ``view`` the ViewPosition (blank on about
15,000 real rows).

Labels are per study and every image of the study gets them: ``labels=chexpert`` or ``negbio``
(the release's NLP labels) or ``labels=FILE`` (a CSV with ``subject_id, study_id`` and the 14
observations, such as the output of ``cxr-tf label``). The DICOM release has no labels of its own:
they and the official split are read from the MIMIC-CXR-JPG folder given as ``jpg_dir`` (or found
in ``data_dir``). ``test_labels=radiologist`` (2.1.0) replaces the test split's labels with
``mimic-cxr-2.1.0-test-set-labeled.csv``. The manifest's ``label_source`` and ``label_method``
columns say where each row's labels came from. Studies without a label row are left out and counted.
Reports, when present (the DICOM release, or ``reports=ZIP_OR_DIR``), are kept per study in the
side table ``reports.csv`` for ``cxr-tf label``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrImageError
from cxr_tf.core.progress import progress
from cxr_tf.sources import manifest
from cxr_tf.sources.base import SourceData, begin, find_file, finish, random_split, states
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "mimic"
OPTIONS = {
    "release": "auto (default), jpg or dicom: which release --data-dir holds",
    "labels": "chexpert (default), negbio, or a CSV FILE with subject_id, study_id and the 14 observations",
    "test_labels": "nlp (default: the same labels as train) or radiologist (2.1.0 test-set-labeled CSV)",
    "views": "frontal (PA, AP; default), lateral (LATERAL, LL), all, or a list such as PA,AP,blank",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
    "limit_studies": "keep N studies (a seeded random subset, whole studies) [default: all]",
    "jpg_dir": "DICOM release: the MIMIC-CXR-JPG folder holding the label, split and metadata CSVs",
    "recipe": "DICOM release: display (default: modality LUT, VOI window, MONOCHROME1 inverted) or mimic-jpg "
              "(the MIMIC-CXR-JPG conversion: min-max, inversion, histogram equalization)",
    "reports": "a mimic-cxr-reports.zip or a folder of files/pNN/pNNNNNNNN/sNNNNNNNN.txt [default: found in "
               "--data-dir]",
}
RELEASES = ("auto", "jpg", "dicom")
RECIPES = ("display", "mimic-jpg")
TEST_LABELS = ("nlp", "radiologist")
KEYS = ["dicom_id", "subject_id", "study_id"]


def card() -> dict:
    """The MIMIC dataset card."""
    return _card(NAME)


def relative_path(subject_id, study_id, dicom_id=None, ext: str = "jpg") -> str:
    """``files/p10/p10000032/s50414267/<dicom_id>.<ext>``; without a dicom_id, the study folder
    (``ext=""``) or the study's report (``ext="txt"``)."""
    subject_id, study_id = str(subject_id), str(study_id)
    base = f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"
    if dicom_id is None:
        return f"{base}.{ext}" if ext else base
    return f"{base}/{dicom_id}.{ext}"


def find(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (the release ships them gzipped)."""
    return find_file(folder, name)


def read_table(path: Path, required) -> pd.DataFrame:
    """A release CSV (plain or gzipped) as strings, blanks kept as ""; errors name the file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (OSError, EOFError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CxrDataError(path, f"cannot read: {exc}") from None
    frame.columns = [c.strip() for c in frame.columns]
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {list(frame.columns)}")
    for col in required:
        frame[col] = frame[col].str.strip()
    return frame


def read_labels(path: Path, findings, aliases: dict, keys=("subject_id", "study_id")) -> pd.DataFrame:
    """One label CSV -> a frame indexed by study_id with one float column per finding (1, 0, -1,
    NaN for blank). Observations are found by name (aliases such as "Airspace Opacity" accepted)."""
    frame = read_table(path, list(keys))
    frame = frame.rename(columns={a: f for a, f in aliases.items() if a in frame.columns and f not in frame})
    absent = [f for f in findings if f not in frame.columns]
    if absent:
        raise CxrDataError(path, f"missing observation column(s) {absent}; header is {list(frame.columns)}")
    out = pd.DataFrame(index=frame["study_id"].to_numpy())
    for f in findings:
        out[f] = states(frame[f], path, f)
    for col in ("subject_id", "labeler"):     # labeler: which labeler and version wrote a labels FILE
        if col in frame:
            out[col] = frame[col].to_numpy()
    dup = out.index.duplicated()
    if dup.any():
        raise CxrDataError(path, f"study_id {out.index[dup][0]!r} has more than one label row")
    return out


def _views(views) -> set | None:
    """The ViewPosition values kept, or None for all."""
    spec = card()["layout"]["views"]
    if isinstance(views, str):
        if views == "all":
            return None
        if views in spec:
            return set(spec[views])
        views = views.split(",")
    wanted = {"" if v.strip().lower() == "blank" else v.strip().upper() for v in views}
    known = {v for vs in spec.values() for v in vs} | {""}
    if not wanted or not wanted <= known | {"AP AXIAL", "PA LLD", "AP LLD", "LAO", "RAO", "XTABLE LATERAL",
                                             "LPO", "SWIMMERS"}:
        raise CxrConfigError(f"unknown views {views!r}", key="views",
                             choices=("frontal", "lateral", "all", "PA,AP,LATERAL,LL,blank"))
    return wanted


def _detect(data_dir: Path, release: str) -> str:
    layout = card()["layout"]
    if release not in RELEASES:
        raise CxrConfigError(f"unknown release {release!r}", key="release", choices=RELEASES)
    if release != "auto":
        return release
    if find(data_dir, layout["record_list"]):     # (the JPG release's CSVs may sit beside it)
        return "dicom"
    if find(data_dir, layout["metadata"]):
        return "jpg"
    raise CxrDataError(data_dir, f"neither {layout['metadata']}(.gz) (MIMIC-CXR-JPG) nor {layout['record_list']}"
                                 "(.gz) (MIMIC-CXR) is here; --data-dir is the release folder holding files/")


def _images(data_dir: Path, kind: str, jpg_dir: Path | None, files: dict) -> pd.DataFrame:
    """One row per image: dicom_id, subject_id, study_id, path, view."""
    layout = card()["layout"]
    if kind == "jpg":
        path = find(data_dir, layout["metadata"])
        meta = read_table(path, [*KEYS, "ViewPosition"])
        files["metadata"] = str(path)
        return meta.assign(path=[relative_path(s, t, d, "jpg") for d, s, t in meta[KEYS].itertuples(index=False)],
                           view=meta["ViewPosition"])[[*KEYS, "path", "view"]]
    path = find(data_dir, layout["record_list"])
    rec = read_table(path, [*KEYS, "path"])
    files["record_list"] = str(path)
    meta_path = next((p for p in (find(d, layout["metadata"]) for d in (jpg_dir, data_dir) if d) if p), None)
    if meta_path:
        meta = read_table(meta_path, ["dicom_id", "ViewPosition"]).set_index("dicom_id")["ViewPosition"]
        files["metadata"] = str(meta_path)
        view = rec["dicom_id"].map(meta)
        if view.isna().any():
            raise CxrDataError(meta_path, f"{int(view.isna().sum())} image(s) of {path.name} are not in it, e.g. "
                                          f"{rec.loc[view.isna(), 'dicom_id'].iloc[0]}")
    else:
        view = pd.Series(_header_views(data_dir, rec["path"]), index=rec.index)
    return rec.assign(view=view)[[*KEYS, "path", "view"]]


def _header_views(data_dir: Path, paths) -> list[str]:
    """ViewPosition read from each DICOM header ("" for a file not on disk: it is reported missing)."""
    from cxr_tf.dicom.display import read_header

    out = []
    for rel in progress(list(paths), desc="mimic: DICOM headers", unit="file"):
        full = data_dir / rel
        try:
            out.append(str(read_header(full).get("view") or "") if full.is_file() else "")
        except CxrImageError as exc:
            log.warning("%s", exc)
            out.append("")
    return out


def _labels(data_dir, jpg_dir, labels, files) -> tuple[pd.DataFrame, str]:
    """The label table (by study_id) and its source name."""
    c = card()
    if labels in c["layout"]["labels"]:
        name = c["layout"]["labels"][labels]
        path = next((p for p in (find(d, name) for d in (jpg_dir, data_dir) if d) if p), None)
        if path is None:
            where = f"{jpg_dir} or {data_dir}" if jpg_dir else str(data_dir)
            raise CxrDataError(where, f"no {name}(.gz); the DICOM release has no labels: pass jpg_dir=<the "
                                      "MIMIC-CXR-JPG folder> or labels=FILE (e.g. from cxr-tf label)")
        source = labels
    else:
        path = Path(labels)
        if not path.is_file():
            raise CxrDataError(path, f"label file not found (labels= takes {', '.join(c['layout']['labels'])} "
                                     "or a CSV file)")
        source = path.name
    files["labels"] = str(path)
    table = read_labels(path, c["findings"], c.get("aliases", {}))
    if "labeler" in table:
        source = f"{source} ({'; '.join(sorted(set(map(str, table['labeler']))))})"
    return table, source


def _official(frame: pd.DataFrame, data_dir, jpg_dir, files, excluded, where) -> pd.DataFrame:
    name = card()["layout"]["split"]
    path = next((p for p in (find(d, name) for d in (jpg_dir, data_dir) if d) if p), None)
    if path is None:
        raise CxrDataError(jpg_dir or data_dir, f"no {name}(.gz) for the official split; pass jpg_dir=<the "
                                                "MIMIC-CXR-JPG folder> or use --split random")
    table = read_table(path, ["dicom_id", "split"]).set_index("dicom_id")["split"]
    unknown = sorted(set(table) - {"train", "validate", "test"})
    if unknown:
        raise CxrDataError(path, f"unknown split value(s) {unknown}; expected train, validate, test")
    files["split"] = str(path)
    split = frame["image_id"].map(table.map({"train": "train", "validate": "val", "test": "test"}))
    if split.isna().any():
        excluded["not in the split file"] = int(split.isna().sum())
    out = frame.assign(split=split)[split.notna()].reset_index(drop=True)
    manifest.assert_patient_disjoint(out, where=where)
    return out


def _reports(data_dir: Path, reports, studies: pd.DataFrame, files) -> pd.DataFrame | None:
    """The side table of reports (patient, study, report) for the kept studies, when reports exist."""
    layout = card()["layout"]
    where = Path(reports) if reports else None
    if where is None:
        where = data_dir / layout["reports_zip"] if (data_dir / layout["reports_zip"]).is_file() else \
            data_dir if (data_dir / "files").is_dir() and any((data_dir / "files").glob("p*/p*/s*.txt")) else None
    if where is None:
        return None
    rows = studies.drop_duplicates("study")[["patient", "study"]]
    names = [relative_path(p, s, None, "txt") for p, s in rows.itertuples(index=False)]
    texts = []
    if where.is_file():
        try:
            with zipfile.ZipFile(where) as zf:
                index = {re.sub(r"^.*?(?=files/)", "", n): n for n in zf.namelist() if n.endswith(".txt")}
                for n in progress(names, desc="mimic: reports", unit="report"):
                    texts.append(zf.read(index[n]).decode("utf-8") if n in index else "")
        except (zipfile.BadZipFile, OSError) as exc:
            raise CxrDataError(where, f"cannot read the reports archive: {exc}") from None
    elif where.is_dir():
        for n in progress(names, desc="mimic: reports", unit="report"):
            p = where / n
            texts.append(p.read_text(encoding="utf-8") if p.is_file() else "")
    else:
        raise CxrDataError(where, "reports not found (a mimic-cxr-reports.zip or a folder holding files/)")
    files["reports"] = str(where)
    table = rows.assign(report_path=names, report=texts)
    missing = int((table["report"] == "").sum())
    if missing:
        log.warning("%s: %d of %d studies have no report", where, missing, len(table))
    return table.reset_index(drop=True)


def load(data_dir, split: str = "official", seed: int | None = None, release: str = "auto",
         labels: str = "chexpert", test_labels: str = "nlp", views="frontal", fractions=None,
         limit_studies: int | None = None, jpg_dir=None, recipe: str = "display", reports=None) -> SourceData:
    """Read a MIMIC-CXR-JPG or MIMIC-CXR folder into a split manifest (see the module doc)."""
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    kind = _detect(data_dir, release)
    for key, value, allowed in (("recipe", recipe, RECIPES), ("test_labels", test_labels, TEST_LABELS)):
        if value not in allowed:
            raise CxrConfigError(f"unknown {key} {value!r}", key=key, choices=allowed)
    if kind == "jpg" and recipe != "display":
        raise CxrConfigError("the JPG release is already converted; recipe applies to the DICOM release",
                             key="recipe")
    jpg_dir = Path(jpg_dir) if jpg_dir else None
    if jpg_dir and not jpg_dir.is_dir():
        raise CxrDataError(jpg_dir, "jpg_dir is not a folder")
    files, excluded = {"release": "MIMIC-CXR-JPG" if kind == "jpg" else "MIMIC-CXR (DICOM)"}, {}
    table, label_source = _labels(data_dir, jpg_dir, labels, files)
    images = _images(data_dir, kind, jpg_dir, files)
    counts = {"images": len(images), "studies": int(images["study_id"].nunique()),
              "patients": int(images["subject_id"].nunique())}
    known = images["study_id"].isin(table.index)
    if (~known).any():
        excluded["study without a label row"] = int((~known).sum())
    images = images[known].reset_index(drop=True)
    frame = pd.DataFrame({"path": images["path"], "image_id": images["dicom_id"], "patient": images["subject_id"],
                          "study": images["study_id"], "view": images["view"], "age": np.nan, "sex": ""})
    frame = pd.concat([frame, table.loc[images["study_id"], list(vocab.findings)].reset_index(drop=True)], axis=1)
    frame = frame.assign(label_source=label_source, label_method="nlp")

    keep = _views(views)
    if keep is not None:
        ok = frame["view"].isin(keep)
        excluded[f"views={views if isinstance(views, str) else ','.join(views)}"] = int((~ok).sum())
        frame = frame[ok].reset_index(drop=True)
    if limit_studies:
        studies = np.sort(frame["study"].unique())
        chosen = set(np.random.default_rng([seed, 31]).permutation(studies)[: int(limit_studies)])
        ok = frame["study"].isin(chosen)
        excluded[f"limit_studies={limit_studies}"] = int((~ok).sum())
        frame = frame[ok].reset_index(drop=True)

    if split == "official":
        frame = _official(frame, data_dir, jpg_dir, files, excluded, str(data_dir))
    else:
        if test_labels == "radiologist":
            raise CxrConfigError("radiologist labels belong to the official test studies; use --split official",
                                 key="test_labels")
        frame = random_split(frame, split, seed, fractions, c)
    if test_labels == "radiologist":
        frame = _radiologist(frame, data_dir, jpg_dir, files, excluded, vocab.findings)
    files["test_split_labels"] = "radiologist" if test_labels == "radiologist" else f"{label_source} (NLP)"

    data = finish(NAME, data_dir, frame, vocab.findings, data_dir, files=files, release_counts=counts,
                  excluded=excluded, decode={"recipe": recipe} if kind == "dicom" and recipe != "display" else {})
    side = _reports(data_dir, reports, data.manifest, files)
    if side is not None:
        data.tables["reports"] = side
    return data


def _radiologist(frame, data_dir, jpg_dir, files, excluded, findings) -> pd.DataFrame:
    """Replace the test split's labels with the 2.1.0 radiologist labels (keyed by study_id)."""
    c = card()
    name = c["layout"]["test_labels"]
    path = next((p for p in (find(d, name) for d in (jpg_dir, data_dir) if d) if p), None)
    if path is None:
        raise CxrDataError(jpg_dir or data_dir, f"no {name} (MIMIC-CXR-JPG 2.1.0) for test_labels=radiologist")
    rad = read_labels(path, findings, c.get("aliases", {}), keys=("study_id",))
    files["test_labels"] = str(path)
    test = frame["split"] == "test"
    labelled = frame["study"].isin(rad.index)
    drop = test & ~labelled
    if drop.any():
        excluded["test image without a radiologist label"] = int(drop.sum())
    frame = frame[~drop].reset_index(drop=True)
    test = frame["split"] == "test"
    frame.loc[test, list(findings)] = rad.loc[frame.loc[test, "study"], list(findings)].to_numpy()
    frame.loc[test, "label_source"] = path.name
    frame.loc[test, "label_method"] = "radiologist"
    return frame
