"""Split a records directory into sites (hospitals) for federated training: an assignment of
patients to sites, IID or with a non-IID skew, or read from a file; and the per-site records
directories, each holding exactly its images, the serialized examples copied byte for byte.

Sites are patient-disjoint (asserted). The skew follows the usual federated-learning benchmark
(Hsu et al. 2019): each patient gets a key (the primary finding, or the dominant view), and each
key's patients are dealt to the sites in proportions drawn from Dirichlet(alpha); a small alpha
puts most of a key on one site, a large one approaches IID.

No TensorFlow here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.sources import manifest as mf
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.records.integrity import finalize_summary
from cxr_tf.records.reader import MANIFEST, SUMMARY, RecordsDir
from cxr_tf.records.tfrecord import read_records, write_records

log = logging.getLogger(__name__)

SKEWS = ("none", "label", "view")
NO_FINDING = "(none)"
SITES_CSV = "sites.csv"


def patient_keys(frame: pd.DataFrame, findings, skew: str) -> pd.Series:
    """The key each patient is dealt by: ``label``, the finding positive on most of the patient's
    images (ties: the rarer finding), or ``(none)``; ``view``, the commonest view."""
    if skew == "view":
        return frame.groupby("patient")["view"].agg(lambda v: v.fillna("").astype(str).value_counts().index[0])
    labels = (frame[list(findings)] == 1).astype(int)
    prevalence = labels.sum()
    order = sorted(findings, key=lambda f: (prevalence[f], f))   # rarer first wins ties
    per_patient = labels.groupby(frame["patient"]).sum()[order]
    key = per_patient.idxmax(axis=1).where(per_patient.max(axis=1) > 0, NO_FINDING)
    return key


def assign_sites(frame: pd.DataFrame, findings, n_sites: int, skew: str = "none", alpha: float = 0.5,
                 seed: int = 0, tries: int = 100) -> pd.Series:
    """Patient -> site index (0..n_sites-1). ``skew``: ``none`` (each patient to a uniformly
    random site), ``label`` or ``view`` (each key's patients dealt by Dirichlet(alpha)
    proportions). Every site gets patients in every split the records have."""
    if skew not in SKEWS:
        raise CxrConfigError(f"unknown skew {skew!r}", key="skew", choices=SKEWS)
    if n_sites < 2:
        raise CxrConfigError(f"a federation needs at least 2 sites, got {n_sites}", key="sites")
    if skew != "none" and not alpha > 0:
        raise CxrConfigError(f"must be positive, got {alpha}", key="alpha")
    patients = frame.groupby("patient")["split"].first()
    keys = patient_keys(frame, findings, skew) if skew != "none" else pd.Series("all", index=patients.index)
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        site = pd.Series(-1, index=patients.index, dtype=int)
        proportions = {}
        for key in sorted(keys.unique()):
            proportions[key] = (np.full(n_sites, 1.0 / n_sites) if skew == "none"
                                else rng.dirichlet(np.full(n_sites, alpha)))
        for split in patients.unique():          # the same proportions in every split
            for key, p in proportions.items():
                members = patients.index[(patients == split) & (keys == key)].to_numpy()
                members = members[rng.permutation(len(members))]
                cuts = np.floor(np.cumsum(p) * len(members) + rng.random()).astype(int).clip(0, len(members))
                for s, part in enumerate(np.split(members, cuts[:-1])):
                    site[part] = s
        per_split = pd.crosstab(patients, site)  # split x site patient counts
        if (site >= 0).all() and per_split.shape[1] == n_sites and (per_split.values > 0).all():
            return site.rename("site")
    raise CxrConfigError(f"could not deal {len(patients)} patients into {n_sites} sites with patients in every "
                         f"split (skew {skew}, alpha {alpha}); use fewer sites or a larger alpha", key="sites")


def read_site_split(path, frame: pd.DataFrame) -> pd.Series:
    """Patient -> site name from a CSV with ``site`` and ``patient`` (or ``image_id``) columns.
    Every patient of the records must be assigned, to one site only."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise CxrDataError(path, "site split file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CxrDataError(path, f"unreadable site split CSV: {exc}") from None
    if "site" not in table or not ({"patient", "image_id"} & set(table.columns)):
        raise CxrDataError(path, "needs a 'site' column and a 'patient' or 'image_id' column; "
                                 f"has {list(table.columns)}")
    if table["site"].isna().any():
        raise CxrDataError(path, f"{int(table['site'].isna().sum())} row(s) with no site")
    if "patient" in table:
        by = table.set_index("patient")["site"]
    else:
        unknown = set(table["image_id"]) - set(frame["image_id"])
        if unknown:
            raise CxrDataError(path, f"{len(unknown)} image id(s) not in the records, e.g. {sorted(unknown)[:3]}")
        joined = frame[["image_id", "patient"]].merge(table[["image_id", "site"]], on="image_id")
        split_patients = joined.groupby("patient")["site"].nunique()
        if (split_patients > 1).any():
            raise CxrDataError(path, f"{int((split_patients > 1).sum())} patient(s) have images at two sites; "
                                     "sites must be patient-disjoint")
        by = joined.groupby("patient")["site"].first()
    if by.index.duplicated().any():
        raise CxrDataError(path, f"{int(by.index.duplicated().sum())} patient(s) listed twice")
    missing = set(frame["patient"]) - set(by.index)
    if missing:
        raise CxrDataError(path, f"{len(missing)} patient(s) of the records have no site, e.g. {sorted(missing)[:3]}")
    if by.nunique() < 2:
        raise CxrDataError(path, "names fewer than 2 sites")
    return by.rename("site")


def write_subset(records_dir, image_ids, out_dir, *, note: dict | None = None,
                 images_per_shard: int | None = None) -> Path:
    """A records directory holding exactly ``image_ids`` of ``records_dir`` (their splits kept),
    the serialized examples copied unchanged into new shards; the summary is recomputed and
    ``note`` stored under its ``"subset"`` key. Returns ``out_dir``."""
    src = RecordsDir(records_dir)
    out = Path(out_dir)
    manifest = src.manifest
    wanted = set(map(str, image_ids))
    unknown = wanted - set(manifest["image_id"])
    if unknown:
        raise CxrDataError(records_dir, f"{len(unknown)} image id(s) to copy are not in the records")
    kept = manifest[manifest["image_id"].isin(wanted)].copy()
    per_shard = images_per_shard or int(src.summary["config"].get("images_per_shard", 512))
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)      # not a completed directory until it is rewritten
    cache: dict[str, list[bytes]] = {}
    new_shard, new_index, shards = [], [], {}
    for split in mf.SPLITS:
        rows = kept[kept["split"] == split]
        if not len(rows):
            continue
        count = -(-len(rows) // per_shard)
        for k in range(count):
            chunk = rows.iloc[k * per_shard:(k + 1) * per_shard]
            name = f"{split}-{k:05d}-of-{count:05d}.tfrecord"
            data = []
            for shard, index in zip(chunk["shard"], chunk["shard_index"]):
                if shard not in cache:
                    try:
                        cache[shard] = list(read_records(src.path / shard))
                    except (OSError, ValueError) as exc:
                        raise CxrDataError(src.path / shard, f"cannot read the shard: {exc}") from None
                data.append(cache[shard][int(index)])
            with atomic.atomic_path(out / name) as tmp:
                write_records(tmp, data)
            shards[name] = len(chunk)
            new_shard += [name] * len(chunk)
            new_index += list(range(len(chunk)))
    for stale in out.glob("*.tfrecord"):
        if stale.name not in shards:
            stale.unlink()
    order = kept.sort_values("split", key=lambda c: c.map({s: i for i, s in enumerate(mf.SPLITS)}),
                             kind="stable")
    order = order.assign(shard=new_shard, shard_index=new_index).reset_index(drop=True)
    findings = src.findings
    mf.write(order, out / MANIFEST)
    summary = dict(src.summary)
    summary.update({
        "counts": {**summary.get("counts", {}), "written_images": int(len(order))},
        "splits": mf.split_summary(order, findings),
        "labels": {f: int((order[f] == 1).sum()) for f in findings},
        "views": {str(k): int(v) for k, v in order["view"].value_counts().items()},
        "shards": shards,
        "image_sizes": {i: summary.get("image_sizes", {}).get(i) for i in order["image_id"]},
        "subset": {"of": str(src.path.resolve()), **(note or {})},
        "tables": {},
    })
    finalize_summary(out, summary)
    return out


def write_sites(records_dir, site_of_patient: pd.Series, out_dir, names=None) -> dict[str, Path]:
    """One records directory per site under ``out_dir`` (``site_<name>``) and ``sites.csv``
    (site, split, images, patients); returns site name -> records directory. Asserts that no
    patient is at two sites and that every image is at exactly one."""
    src = RecordsDir(records_dir)
    frame = src.manifest
    site = frame["patient"].map(site_of_patient)
    if site.isna().any():
        raise CxrDataError(records_dir, f"{int(site.isna().sum())} image(s) have no site")
    labels = [str(s) if names is None else names[int(s)] for s in site]
    frame = frame.assign(site=labels)
    assert (frame.groupby("patient")["site"].nunique() == 1).all(), "sites must be patient-disjoint"
    out = Path(out_dir)
    paths, rows = {}, []
    for name in sorted(frame["site"].unique(), key=str):
        part = frame[frame["site"] == name]
        paths[name] = write_subset(src.path, part["image_id"], out / f"site_{name}",
                                   note={"site": name})
        for split, g in part.groupby("split"):
            rows.append({"site": name, "split": split, "images": len(g), "patients": g["patient"].nunique()})
    total = sum(r["images"] for r in rows)
    assert total == len(frame), f"{total} images in the sites, {len(frame)} in the records"
    atomic.write_csv(out / SITES_CSV, pd.DataFrame(rows))
    return paths
