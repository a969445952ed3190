"""Studies that are a chain of steps rather than one training run; ``cxr-tf reproduce`` runs the
one a recipe names in ``chain`` (:data:`CHAINS`).

``weak_labels`` (seed 000's study, ``reproductions/weak-labels.toml``), on the MIMIC-CXR DICOM
release: the DICOM metadata exported de-identified (``cxr-tf dicom``) -> the reports labelled
(``cxr-tf label``) -> statistics of the labelled set (``cxr-tf stats``) -> a patient-level 8:1:1
split of a study subset prepared from the DICOMs -> one training per backbone (BCE, Adam) ->
AUROC with CIs, accuracy, F1 and confusion matrices -> Grad-CAM, LIME and Integrated Gradients
overlays of test images -> ``report.md`` setting the backbones side by side. With ``--demo`` it
runs on a phantom DICOM release whose reports describe the drawn findings, and the report also
gives the labeler's agreement with the phantoms' true findings.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import atomic, cards
from cxr_tf.training.config import TrainConfig
from cxr_tf.core.settings import layered
from cxr_tf.records.phantom import Demo
from cxr_tf.core.errors import CxrConfigError

log = logging.getLogger(__name__)


def _phantom(recipe: dict, out: Path) -> tuple[Path, pd.DataFrame]:
    """The demo's phantom DICOM release (reused when complete) and its true per-study labels."""
    from cxr_tf.datasets.mimic.phantom import true_labels

    d = Demo.of(recipe["demo"])
    return d.data_dir(out, "mimic"), true_labels(n_images=d.images, n_patients=d.patients, seed=d.seed)


def _agreement(labels: pd.DataFrame, truth: pd.DataFrame, findings) -> pd.DataFrame:
    """Per observation, the share of studies whose mined label equals the phantom's true state."""
    mined = labels.set_index(labels["study_id"].astype(str))
    true = truth.set_index("study_id").loc[mined.index]
    rows = []
    for f in findings:
        a = mined[f].astype(float).fillna(9).to_numpy()
        b = pd.to_numeric(true[f], errors="coerce").fillna(9).to_numpy()
        rows.append({"observation": f, "agreement": float((a == b).mean()),
                     "true_positive_studies": int((b == 1).sum())})
    return pd.DataFrame(rows)


def _test_images(records, n: int, folder: Path) -> list[str]:
    """The first ``n`` test images decoded as prepare decoded them (the records' DICOM recipe),
    as PNGs named by image id, so the heatmaps see the pixels the model was trained on."""
    from PIL import Image

    from cxr_tf.imaging import decode_file
    from cxr_tf.records.reader import RecordsDir

    rec = RecordsDir(records)
    root, decode = Path(rec.summary["data_dir"]), rec.summary.get("decode", {})
    files = []
    for row in rec.split_frame("test").head(n).itertuples():
        path = folder / f"{row.image_id}.png"
        if not path.is_file():
            with atomic.atomic_path(path) as tmp:
                Image.fromarray(decode_file(root / row.path, **decode), mode="L").save(tmp, format="PNG")
        files.append(str(path))
    return files


def _explain(run: Path, records, n: int, methods) -> dict:
    """Overlays of the first ``n`` test images per method; returns method -> list of PNG paths."""
    from cxr_tf.explain.run import explain_files

    files = _test_images(records, n, Path(records).parent / "test_images")
    out = {}
    for method in methods:
        written, _ = explain_files(run / "model.keras", files, run / "explain" / method, method=method)
        out[method] = [w["png"] for w in written]
    return out


def weak_labels(recipe: dict, out, data_dir=None, *, demo: bool = False, overrides: dict | None = None,
                workers: int | None = None) -> dict:
    """Run the weak-labels chain (see the module doc); returns paths and the backbones' mean AUROC."""
    from cxr_tf.dicom.tool import convert
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.label import label_file
    from cxr_tf.records.prepare import prepare
    from cxr_tf.records.reader import RecordsDir
    from cxr_tf.datasets.mimic import source as mimic
    from cxr_tf.studies.stats import stats
    from cxr_tf.training.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = None
    if demo:
        data_dir, truth = _phantom(recipe, out)
    elif data_dir is None:
        raise CxrConfigError("is required (or use --demo)", key="data_dir")
    data_dir = Path(data_dir)
    steps = {}
    t = time.perf_counter()
    meta = convert([data_dir / "files"], out / "dicom_metadata", workers=workers,
                   salt=os.environ.get("CXR_TF_DEID_SALT"))    # pseudonyms linkable across runs only with a salt
    steps["dicom metadata (de-identified)"] = time.perf_counter() - t
    reports = data_dir / cards.dataset_card("mimic")["layout"]["reports_zip"]
    t = time.perf_counter()
    lab = recipe.get("labels", {})
    labelled = label_file(reports if reports.is_file() else data_dir, out / "labels.csv",
                          vocab=lab.get("vocabulary", "chexpert"), sections=lab.get("sections", "impression"),
                          workers=workers)
    steps["report labeling"] = time.perf_counter() - t
    d = Demo.of(recipe.get("demo"))
    prep = layered(recipe.get("prepare"), d.prepare if demo else None)
    options = {**prep.get("options", {}), "labels": str(out / "labels.csv")}
    t = time.perf_counter()
    counts = stats(out / "stats", dataset="mimic", data_dir=data_dir, split=prep.get("split", "random"),
                   options={k: v for k, v in options.items() if k not in ("limit_studies", "recipe")})
    steps["statistics"] = time.perf_counter() - t
    t = time.perf_counter()
    records = out / "records"
    prepare("mimic", data_dir, records, split=prep.get("split", "random"), size=int(prep.get("size", 256)),
            options=options, workers=workers)
    steps["prepare"] = time.perf_counter() - t
    rec = RecordsDir(records)
    n_boot = int(d.extra.get("bootstrap", 1000)) if demo else 1000
    values = layered(recipe.get("train"), d.train if demo else None, overrides)
    n_explain = int(d.extra.get("explain_images", 2) if demo else recipe["explain"]["images"])
    results = {}
    for backbone in recipe["backbones"]:
        run = out / "runs" / backbone
        cfg = TrainConfig.from_mapping({**values, "backbone": backbone, "records": str(records), "out": str(run)},
                                       where=f"reproductions/{recipe['name']}.toml")
        t = time.perf_counter()
        train(cfg, resume=(run / "state.json").is_file())
        metrics = evaluate(run, split="test", n_boot=n_boot,
                           threshold_rule=recipe.get("evaluate", {}).get("threshold_rule"))
        overlays = _explain(run, records, n_explain, recipe["explain"]["methods"])
        results[backbone] = {"metrics": metrics, "overlays": overlays, "seconds": time.perf_counter() - t}
    agreement = _agreement(pd.read_csv(out / "labels.csv", dtype={"study_id": str}), truth,
                           mimic.card()["findings"]) if truth is not None else None
    elapsed = time.perf_counter() - t0
    report = render(recipe, results, rec, meta, labelled, counts, agreement, steps, demo, elapsed)
    atomic.write_text(out / "report.md", report)
    return {"report": str(out / "report.md"), "seconds": elapsed,
            "mean_auroc": {b: r["metrics"]["mean_auroc"] for b, r in results.items()},
            "runs": {b: str(out / "runs" / b) for b in results}}


def _cell(row) -> str:
    if row is None or not np.isfinite(row["auroc"]):
        return "n/a"
    return f"{row['auroc']:.3f} ({row['auroc_ci_low']:.3f}-{row['auroc_ci_high']:.3f})"


def render(recipe, results, rec, meta, labelled, counts, agreement, steps, demo, elapsed) -> str:
    """The study's ``report.md``."""
    names = list(results)
    per = {b: {r["finding"]: r for r in results[b]["metrics"]["per_class"]} for b in names}
    findings = [f for f in per[names[0]] if f != "mean"]
    lines = [f"# {recipe['title']}", ""]
    if demo:
        lines += ["**Demo on synthetic phantoms** (a phantom MIMIC-CXR DICOM release whose reports describe the "
                  "drawn findings; trained from scratch): the numbers check the chain, they are not clinical.", ""]
    lines += [f"Wall time {elapsed / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items())
              + ", " + ", ".join(f"{b} {results[b]['seconds']:.0f} s" for b in names) + ".", "",
              "## Data", "",
              f"- DICOM metadata: {meta['converted']} files exported de-identified (DICOM PS3.15 basic profile, "
              f"keyed pseudonyms) to `dicom_metadata/metadata.csv`; {meta['failed']} unreadable (see errors.csv).",
              f"- Reports labelled: {labelled['reports']} ({labelled['input']}): {labelled['positive']} positive, "
              f"{labelled['uncertain']} uncertain, {labelled['negative']} negative mentions (`labels.csv`).",
              f"- Labelled set: {counts['images']:,} images, {counts['patients']:,} patients, {counts['studies']:,} "
              f"studies, {counts['positive_findings']:,} positive findings (`stats/stats.md`).",
              "- Split (patient-level, " + ", ".join(f"{s} {rec.summary['splits'][s]['images']} images / "
                                                      f"{rec.summary['splits'][s]['patients']} patients"
                                                      for s in rec.splits) + "); patients shared between splits: 0.",
              ""]
    if agreement is not None:
        lines += ["## Labeler agreement with the phantoms' true findings", "",
                  "| observation | agreement | studies truly positive |", "|---|---|---|"]
        lines += [f"| {r.observation} | {r.agreement:.3f} | {r.true_positive_studies} |"
                  for r in agreement.itertuples()]
        lines += [f"| **all** | **{agreement['agreement'].mean():.3f}** | |", ""]
    lines += ["## Test AUROC (95% CI), side by side", "", "| finding | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for f in findings:
        lines.append(f"| {f} | " + " | ".join(_cell(per[b].get(f)) for b in names) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{results[b]['metrics']['mean_auroc']:.3f}**" for b in names) + " |")
    lines += ["", "| thresholded (mean over findings) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in ("accuracy", "precision", "recall", "f1"):
        lines.append(f"| {key} | " + " | ".join(f"{per[b]['mean'][key]:.3f}" for b in names) + " |")
    lines += ["", "Thresholds: max F1 per finding on the validation split. Confusion matrices, ROC and PR curves: "
              "`runs/<backbone>/confusion_matrices.png`, `roc_curves.png`, `pr_curves.png`.", "",
              "## Where the models look", ""]
    for b in names:
        for method, pngs in results[b]["overlays"].items():
            rel = [str(Path(p).relative_to(Path(p).parents[4])) for p in pngs]
            lines.append(f"- {b}, {method}: " + ", ".join(f"[{Path(r).name}]({r})" for r in rel))
    return "\n".join(lines) + "\n"


CHAINS = {"weak_labels": weak_labels}
