"""``cxr-tf stats``: descriptive statistics of a dataset's whole label file, or of a manifest, as
``stats.md``, CSV tables and PNG figures (no TensorFlow here).

Counts of images, patients, studies and positive findings; prevalence per finding (with the
uncertain and blank rates where the vocabulary has them, CheXpert and MIMIC); labels per image;
co-occurrence; age and sex, overall and by label; views; per split, and the patients shared
between splits (which must be none); how many listed images are on disk; and a grid of sample
images per label from those present. Every file is written atomically.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrDataError

log = logging.getLogger(__name__)
IMPLAUSIBLE_AGE = 120
SAMPLES_PER_LABEL = 4


def from_source(dataset: str, data_dir, split: str = "official", options: dict | None = None
                ) -> tuple[pd.DataFrame, list[str], Path, dict]:
    """(manifest of every listed image, findings, image root, facts) from a dataset directory
    (``options`` go to the source's ``load``, e.g. MIMIC's ``labels``)."""
    from cxr_tf import sources

    source = sources.get(dataset)
    data = source.load(data_dir, split=split, **sources.check_options(source, options or {}))
    frame = data.manifest.assign(on_disk=~data.manifest["image_id"].isin(set(data.missing)))
    return frame, list(data.findings), Path(data.root), {"dataset": dataset, "source": str(data_dir),
                                                         "excluded_by_filter": dict(data.excluded),
                                                         "label_file": dict(data.release_counts)}


def from_manifest(path, dataset: str | None = None) -> tuple[pd.DataFrame, list[str], Path | None, dict]:
    """(manifest, findings, image root or None, facts) from a ``manifest.csv`` (its records
    directory's summary gives the findings and data dir; else ``dataset``'s card)."""
    from cxr_tf.sources import manifest as mf

    path = Path(path)
    summary = path.parent / "summary.json"
    if summary.is_file():
        import json
        s = json.loads(summary.read_text())
        findings, root, dataset = s["findings"], Path(s.get("data_dir", "")), dataset or s.get("config", {}).get(
            "dataset")
    elif dataset:
        from cxr_tf.vocab.findings import vocabulary
        findings, root = list(vocabulary(dataset).findings), None
    else:
        raise CxrDataError(path, "no summary.json beside this manifest: give --dataset so its findings are known")
    frame = mf.read(path, findings)
    on_disk = [bool(root) and (root / p).is_file() for p in frame["path"]] if root else [False] * len(frame)
    return frame.assign(on_disk=on_disk), list(findings), root, {"dataset": dataset, "source": str(path)}


def tables(frame: pd.DataFrame, findings: list[str]) -> dict[str, pd.DataFrame]:
    """Every table of the report, from a manifest with an ``on_disk`` column."""
    y = frame[findings].to_numpy(np.float64)
    pos, unc, neg, blank = (y == 1), (y == -1), (y == 0), np.isnan(y)
    splits = ["all"] + [s for s in ("train", "val", "test") if "split" in frame and (frame["split"] == s).any()]
    counts, prevalence = [], []
    for split in splits:
        m = np.ones(len(frame), bool) if split == "all" else (frame["split"] == split).to_numpy()
        part = frame[m]
        counts.append({"split": split, "images": int(m.sum()), "patients": int(part["patient"].nunique()),
                       "studies": int(part["study"].nunique()), "positive_findings": int(pos[m].sum()),
                       "images_with_no_positive": int((~pos[m].any(axis=1)).sum()),
                       "images_on_disk": int(part["on_disk"].sum())})
        for j, f in enumerate(findings):
            n = max(int(m.sum()), 1)
            prevalence.append({"split": split, "finding": f, "positive": int(pos[m, j].sum()),
                               "uncertain": int(unc[m, j].sum()), "negative": int(neg[m, j].sum()),
                               "blank": int(blank[m, j].sum()), "positive_rate": pos[m, j].sum() / n,
                               "uncertain_rate": unc[m, j].sum() / n, "blank_rate": blank[m, j].sum() / n})
    per_image = pos.sum(axis=1)
    labels_per_image = pd.Series(per_image).value_counts().sort_index()
    co = pos.T.astype(np.int64) @ pos.astype(np.int64)
    age = pd.to_numeric(frame["age"], errors="coerce")
    sex = frame["sex"].fillna("").astype(str).replace("", "unknown")
    by_label = []
    for j, f in enumerate(findings + ["(none positive)"]):
        m = pos[:, j] if j < len(findings) else ~pos.any(axis=1)
        a = age[m & (age <= IMPLAUSIBLE_AGE)]
        by_label.append({"label": f, "images": int(m.sum()), "age_mean": a.mean(), "age_median": a.median(),
                         "age_q1": a.quantile(0.25), "age_q3": a.quantile(0.75),
                         **{f"sex_{k}": int(v) for k, v in sex[m].value_counts().items()}})
    overlap = []
    if "split" in frame:
        members = {s: set(frame.loc[frame["split"] == s, "patient"]) for s in splits[1:]}
        for i, a in enumerate(splits[1:]):
            for b in splits[2 + i:]:
                overlap.append({"split_a": a, "split_b": b, "shared_patients": len(members[a] & members[b])})
    plausible = age[age <= IMPLAUSIBLE_AGE]
    label_table = pd.DataFrame(by_label)
    label_table = label_table.fillna({c: 0 for c in label_table.columns if c.startswith("sex_")})
    views = frame["view"].fillna("").replace("", "(blank)").value_counts()
    return {
        "counts": pd.DataFrame(counts), "prevalence": pd.DataFrame(prevalence),
        "labels_per_image": pd.DataFrame({"positive_labels": labels_per_image.index,
                                          "images": labels_per_image.values}),
        "cooccurrence": pd.DataFrame(co, index=findings, columns=findings).rename_axis("finding").reset_index(),
        "by_label": label_table,
        "views": views.rename_axis("view").reset_index(name="images"),
        "age": pd.DataFrame({"images_with_age": [int(age.notna().sum())],
                             "implausible_over_120": [int((age > IMPLAUSIBLE_AGE).sum())],
                             "mean": [plausible.mean()], "median": [plausible.median()]}),
        "sex": sex.value_counts().rename_axis("sex").reset_index(name="images"),
        "split_overlap": pd.DataFrame(overlap, columns=["split_a", "split_b", "shared_patients"]),
    }


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def figures(t: dict, frame: pd.DataFrame, findings: list[str], root: Path | None, out: Path) -> list[str]:
    """The PNG figures; returns their names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    prev = t["prevalence"][t["prevalence"]["split"] == "all"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(findings) + 1))
    ax.barh(prev["finding"], prev["positive"], color="#4477aa")
    for i, v in enumerate(prev["positive"]):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images with a positive label")
    _save_figure(fig, out / "prevalence.png")
    names.append("prevalence.png")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(t["labels_per_image"]["positive_labels"], t["labels_per_image"]["images"], color="#4477aa")
    ax.set_xlabel("positive labels per image")
    ax.set_ylabel("images")
    _save_figure(fig, out / "labels_per_image.png")
    names.append("labels_per_image.png")
    co = t["cooccurrence"].set_index("finding").to_numpy()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.log10(co + 1), cmap="viridis")
    ax.set_xticks(range(len(findings)), findings, rotation=90, fontsize=7)
    ax.set_yticks(range(len(findings)), findings, fontsize=7)
    fig.colorbar(im, ax=ax, label="log10(images + 1)")
    _save_figure(fig, out / "cooccurrence.png")
    names.append("cooccurrence.png")
    age = pd.to_numeric(frame["age"], errors="coerce")
    ok = age[age <= IMPLAUSIBLE_AGE].dropna()
    if len(ok):
        y = frame[findings].to_numpy(np.float64) == 1
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.hist(ok, bins=40, color="#4477aa")
        a1.set_xlabel("age (years)")
        data = [age[y[:, j] & (age <= IMPLAUSIBLE_AGE)].dropna() for j in range(len(findings))]
        a2.boxplot([d if len(d) else [np.nan] for d in data], vert=False, showfliers=False)
        a2.set_yticks(range(1, len(findings) + 1), findings, fontsize=7)
        a2.set_xlabel("age by label (years)")
        _save_figure(fig, out / "age.png")
        names.append("age.png")
    sexes = [c for c in t["by_label"].columns if c.startswith("sex_")]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(findings) + 1))
    left = np.zeros(len(t["by_label"]))
    for c in sexes:
        ax.barh(t["by_label"]["label"], t["by_label"][c], left=left, label=c[4:])
        left += t["by_label"][c].to_numpy()
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.set_xlabel("images by sex")
    _save_figure(fig, out / "sex_by_label.png")
    names.append("sex_by_label.png")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(t["views"]["view"].astype(str), t["views"]["images"], color="#4477aa")
    ax.set_ylabel("images")
    _save_figure(fig, out / "views.png")
    names.append("views.png")
    if root is not None and _sample_grid(frame, findings, root, out / "samples.png"):
        names.append("samples.png")
    return names


def _sample_grid(frame, findings, root: Path, path: Path) -> bool:
    """Up to SAMPLES_PER_LABEL images on disk per label, as a grid; False if none is on disk."""
    import matplotlib.pyplot as plt

    from cxr_tf.core.errors import CxrImageError
    from cxr_tf.imaging import decode_file

    present = frame[frame["on_disk"]]
    rows = []
    for f in findings:
        paths = present.loc[present[f] == 1, "path"].head(SAMPLES_PER_LABEL).tolist()
        if paths:
            rows.append((f, paths))
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), SAMPLES_PER_LABEL, figsize=(2 * SAMPLES_PER_LABEL, 2 * len(rows)),
                             squeeze=False)
    for i, (f, paths) in enumerate(rows):
        for k in range(SAMPLES_PER_LABEL):
            ax = axes[i][k]
            ax.axis("off")
            if k < len(paths):
                try:
                    ax.imshow(decode_file(root / paths[k]), cmap="gray")
                except CxrImageError as exc:
                    log.warning("%s", exc)
            if k == 0:
                ax.set_title(f, fontsize=8, loc="left")
    _save_figure(fig, path)
    return True


def _markdown(t: dict, facts: dict, names: list[str]) -> str:
    c = t["counts"].set_index("split")
    all_ = c.loc["all"]
    lines = [f"# Dataset statistics: {facts.get('dataset') or 'manifest'}", "", f"Source: `{facts['source']}`", "",
             f"- {all_['images']:,} images listed, {all_['images_on_disk']:,} on disk; {all_['patients']:,} patients; "
             f"{all_['studies']:,} studies; {all_['positive_findings']:,} positive findings; "
             f"{all_['images_with_no_positive']:,} images with no positive label.", ""]
    lines += ["| split | images | patients | studies | positive findings | on disk |", "|---|---|---|---|---|---|"]
    lines += [f"| {s} | {r['images']:,} | {r['patients']:,} | {r['studies']:,} | {r['positive_findings']:,} | "
              f"{r['images_on_disk']:,} |" for s, r in c.iterrows()]
    if len(t["split_overlap"]):
        shared = int(t["split_overlap"]["shared_patients"].sum())
        lines += ["", f"Patients shared between splits: **{shared}**" + (" (must be 0)" if shared else " (none)")]
    prev = t["prevalence"][t["prevalence"]["split"] == "all"]
    lines += ["", "| finding | positive | uncertain | negative | blank | positive % | uncertain % | blank % |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.finding} | {r.positive:,} | {r.uncertain:,} | {r.negative:,} | {r.blank:,} | "
              f"{100 * r.positive_rate:.2f} | {100 * r.uncertain_rate:.2f} | {100 * r.blank_rate:.2f} |"
              for r in prev.itertuples()]
    a = t["age"].iloc[0]
    lines += ["", f"Age: {int(a['images_with_age']):,} images with an age, median {a['median']:.0f}; "
              f"{int(a['implausible_over_120'])} implausible (> {IMPLAUSIBLE_AGE}) left out of the age figures.",
              "Sex: " + ", ".join(f"{r.sex} {r.images:,}" for r in t["sex"].itertuples()),
              "Views: " + ", ".join(f"{r.view} {r.images:,}" for r in t["views"].itertuples()), ""]
    if facts.get("label_file"):
        lines.append("Counted in the release's files (before any filter): "
                     + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in facts["label_file"].items()) + ".")
    for k, v in facts.get("excluded_by_filter", {}).items():
        lines.append(f"Excluded by the source's filter {k}: {v:,} listed images.")
    lines += ["", *[f"![{n[:-4]}]({n})" for n in names], ""]
    return "\n".join(lines)


def stats(out_dir, *, dataset: str | None = None, data_dir=None, manifest=None, figures_too: bool = True,
          split: str = "official", options: dict | None = None) -> dict:
    """Write ``stats.md``, the tables (``<name>.csv``) and the figures into ``out_dir``; returns
    the counts of the whole label file (read with ``split`` and the source ``options``)."""
    if manifest is not None:
        frame, findings, root, facts = from_manifest(manifest, dataset)
    elif dataset and data_dir is not None:
        frame, findings, root, facts = from_source(dataset, data_dir, split, options)
    else:
        from cxr_tf.core.errors import CxrConfigError
        raise CxrConfigError("give --dataset with --data-dir, or --manifest", key="manifest")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = tables(frame, findings)
    for name, table in t.items():
        atomic.write_csv(out / f"{name}.csv", table)
    names = figures(t, frame, findings, root, out) if figures_too else []
    atomic.write_text(out / "stats.md", _markdown(t, facts, names))
    counts = t["counts"].set_index("split").loc["all"].to_dict()
    counts["shared_patients"] = int(t["split_overlap"]["shared_patients"].sum()) if len(t["split_overlap"]) else 0
    log.info("stats of %s into %s: %s", facts["source"], out, counts)
    out = {k: int(v) for k, v in counts.items()}
    out["label_file"] = {k: int(v) for k, v in facts.get("label_file", {}).items()}
    out["excluded_by_filter"] = dict(facts.get("excluded_by_filter", {}))
    return out
