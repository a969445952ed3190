"""Google Health's expert relabelling of ChestX-ray14 (Majkowska et al., Radiology 2020) as the
test labels of the official split: ``cxr-tf prepare chestxray14 --option test_labels=google2019``.

Four findings (Airspace opacity, Fracture, Nodule or mass, Pneumothorax), adjudicated by three
radiologists, for 4,376 images: 2,414 from NIH's train_val list (``Set Id`` val) and 1,962 from
its test list (``test``). With the option, the test split holds exactly Google's test images, with
Google's labels (``label_method`` radiologist, ``label_source`` google2019): Pneumothorax is
Google's, the three findings NIH has no column for are added after NIH's fourteen, and NIH's other
findings are blank there (not relabelled, so not scored). NIH test images Google did not relabel
are left out and counted. Training and validation rows keep NIH's labels (``label_method`` nlp).

Read: torchxrayvision's merged file (``google2019_nih-chest-xray-labels.csv``, the Data_Entry
columns plus the four findings as YES/NO and ``Set Id``) or Google's own pair
(``four_findings_expert_labels_validation_labels.csv``, ``..._test_labels.csv``), plain or gzipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.sources.base import find_file, open_text

NAME = "google2019"
ANSWERS = {"YES": 1.0, "NO": 0.0}


def _read(path, findings, set_id: str | None) -> pd.DataFrame:
    """One Google label file -> image_id, set, one 1/0 column per finding; errors name the line."""
    with open_text(path) as fh:
        table = pd.read_csv(fh, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    wanted = ["Image Index", *findings, *([] if set_id else ["Set Id"])]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise CxrDataError(path, f"no column(s) {missing}; is this Google's NIH relabelling?")
    out = pd.DataFrame({"image_id": table["Image Index"].str.strip(),
                        "set": set_id or table["Set Id"].str.strip().str.lower()})
    for f in findings:
        cells = table[f].str.strip().str.upper()
        bad = ~cells.isin(ANSWERS)
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise CxrDataError(path, f"line {line}: {f} is {table[f][bad].iloc[0]!r}; allowed: YES or NO")
        out[f] = cells.map(ANSWERS).astype(np.float32)
    bad = ~out["set"].isin(("val", "test"))
    if bad.any():
        raise CxrDataError(path, f"line {int(np.flatnonzero(bad.to_numpy())[0]) + 2}: Set Id "
                                 f"{out['set'][bad].iloc[0]!r}; allowed: val or test")
    return out


def read(data_dir, card: dict) -> tuple[pd.DataFrame, list[str]]:
    """Google's labels in ``data_dir`` (the merged file, else the validation/test pair) and the
    files read."""
    spec = card["relabels"][NAME]
    merged = find_file(data_dir, spec["file"])
    if merged is not None:
        return _read(merged, spec["findings"], None), [str(merged)]
    pair = {s: find_file(data_dir, spec[f"{s}_file"]) for s in ("val", "test")}
    if any(p is None for p in pair.values()):
        raise CxrDataError(data_dir, f"test_labels={NAME} needs {spec['file']} (or Google's "
                                     f"{spec['val_file']} and {spec['test_file']})")
    return (pd.concat([_read(p, spec["findings"], s) for s, p in pair.items()], ignore_index=True),
            [str(p) for p in pair.values()])


def apply(frame: pd.DataFrame, findings: tuple, data_dir, card: dict, excluded: dict, files: dict):
    """The manifest with Google's labels as the test split's, and the findings (NIH's, then the
    ones only Google labels); see the module doc."""
    if not (frame["split"] == "test").any():
        raise CxrConfigError(f"test_labels={NAME} relabels the official test split; use --split official",
                             key="test_labels")
    google, read_files = read(data_dir, card)
    spec = card["relabels"][NAME]
    dup = google["image_id"].duplicated()
    if dup.any():
        raise CxrDataError(read_files[0], f"image {google['image_id'][dup].iloc[0]!r} is listed twice")
    unknown = sorted(set(google["image_id"]) - set(frame["image_id"]))
    if unknown:
        raise CxrDataError(read_files[0], f"{len(unknown)} image(s) not in the Data_Entry file, e.g. {unknown[:3]}")
    test = google[google["set"] == "test"].set_index("image_id")
    is_test = frame["split"] == "test"
    outside = set(test.index) - set(frame.loc[is_test, "image_id"])
    if outside:
        raise CxrDataError(read_files[0], f"{len(outside)} of Google's test images are not in NIH's test list, "
                                          f"e.g. {sorted(outside)[:3]}")
    keep = ~is_test | frame["image_id"].isin(test.index)
    excluded[f"NIH test image not relabelled ({NAME})"] = int((~keep).sum())
    frame = frame[keep].reset_index(drop=True)
    is_test = (frame["split"] == "test").to_numpy()
    added = [f for f in spec["findings"] if f not in findings]
    for f in added:
        frame[f] = np.nan
    frame.loc[is_test, list(findings)] = np.nan
    rows = test.loc[frame.loc[is_test, "image_id"]]
    for f in spec["findings"]:
        frame.loc[is_test, f] = rows[f].to_numpy()
    frame["label_method"] = np.where(is_test, "radiologist", "nlp")
    frame["label_source"] = np.where(is_test, NAME, "nih")
    files.update(test_split_labels=f"{NAME} (radiologist-adjudicated, {', '.join(spec['findings'])})",
                 google2019=";".join(read_files))
    counts = {f"{NAME}_images": len(google), f"{NAME}_val": int((google["set"] == "val").sum()),
              f"{NAME}_test": int(len(test))}
    return frame, (*findings, *added), counts
