"""Which heatmap method localizes best? Every registered method on the same trained phantom model,
scored with ChestX-ray8's protocol (fixed levels 60/180) and CheXlocalize's (a threshold per
finding tuned on half of the annotated test images, by patient; mIoU, hit rate, box accuracy),
each beside the oracle ceiling of the model's CAM grid.

One command: ``python benchmarks/localization.py [--size 224] [--methods a,b] [--out DIR]``.

The model: the CheXNet demo recipe (DenseNet121 from scratch, Adam 1e-3, BCE, batch 16, flip,
plateau, best validation loss) at ``--size`` px on 1,500 phantoms drawn at 256 px and stored at
256 (the recipe's own sizes); trained once and reused from ``--out``. The baseline in the same run
is ``cam``, ChestX-ray8's and CheXNet's method at the CAM layer, and the ceiling is the oracle
CAM on that layer's grid (7 x 7 at 224 px). Methods that read earlier stages can pass it.

With ``../shared/data/nih`` (or ``--nih DIR``), the real NIH images are run too, with the
phantom-trained model: a check of the machinery on real coordinates and image sizes, not of
accuracy. Images with boxes in the box list are scored like the phantoms; NIH boxes exist only on
official test images, and a folder without any (the 12 sample images are all train/val images)
gets each method's heatmap checked for size and finiteness in the original file's pixels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

SLOW = {"lime": {"samples": 50}}   # LIME's default 200 perturbations per pair would take an hour


def train_model(out: Path, size: int, images: int, epochs: int) -> Path:
    """The phantom tree, its records and the CheXNet demo recipe trained at ``size`` (reused)."""
    from cxr_tf.datasets.chestxray14.phantom import write_dataset
    from cxr_tf.records.prepare import prepare
    from cxr_tf.studies.reproduce import resolve
    from cxr_tf.training.train import TrainConfig, train
    data, records, run = out / "phantom", out / "records_256", out / f"run_{size}"
    if not (data / "Data_Entry_2017_v2020.csv").is_file():
        write_dataset(data, n_images=images, n_patients=images // 3, size=256, seed=0)
    if not (records / "summary.json").is_file():
        prepare("chestxray14", data, records, size=256)
    if not (run / "model.keras").is_file():
        cfg, _ = resolve("chexnet", demo=True, overrides={"image_size": size, "epochs": epochs})
        train(TrainConfig.from_mapping({**cfg.given_values(), "records": str(records), "out": str(run),
                                        "verbose": 0}))
    return run


def score(run: Path, method: str, records=None, n_boot: int = 200) -> dict:
    """One method's localization: per finding and mean, both protocols, with timing."""
    from cxr_tf.explain.localize import localize_run
    from cxr_tf.explain.registry import METHODS
    t0 = time.perf_counter()
    res = localize_run(run, method, records=records, write=False, n_boot=n_boot, options=SLOW.get(method))
    fixed = res.summary[res.summary["T"] == 0.5].set_index("finding")
    chex = res.chexlocalize.set_index("finding")
    table = pd.DataFrame({
        "boxes": fixed["boxes"], "pointing": fixed["pointing"],
        "acc_fixed": fixed["accuracy"], "ceiling_fixed": fixed["ceiling_accuracy"],
        "afp_fixed": fixed["avg_false_positives"],
        "acc_tuned": chex["acc"], "ceiling_tuned": chex["acc_ceiling"],
        "miou": chex["miou"],
        "miou_ci": chex["miou_low"].round(2).astype(str) + "-" + chex["miou_high"].round(2).astype(str),
        "miou_ceiling": chex["miou_ceiling"], "hit_rate": chex["hit_rate"], "hit_ceiling": chex["hit_rate_ceiling"],
        "threshold": chex["threshold"]}).drop(index="mean", errors="ignore")
    mean = table.drop(columns=["miou_ci"]).mean(numeric_only=True)
    assert method in METHODS
    return {"method": method, "table": table, "mean": mean, "seconds_per_map": res.seconds_per_map,
            "tuned_on": res.tuned_on, "wall": time.perf_counter() - t0}


def _ratio(a, b):
    return a / b if b > 0 else float("nan")


def main(argv=None) -> dict:
    """Train (or reuse) the model, score every method, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224, help="model input size in px")
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    ap.add_argument("--nih", default=None, help="a real NIH folder (default: ../shared/data/nih when present)")
    ap.add_argument("--out", default="runs/localization")
    args = ap.parse_args(argv)
    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.explain.registry import METHODS
    import cxr_tf.explain.methods  # noqa: F401  (fills the registry)
    out = Path(args.out)
    t0 = time.perf_counter()
    run = train_model(out, args.size, args.images, args.epochs)
    auroc = evaluate(run, split="test", n_boot=50, figures=False)["mean_auroc"]
    print(f"model: DenseNet121 (CheXNet demo recipe) at {args.size} px, mean test AUROC {auroc:.4f} "
          f"({time.perf_counter() - t0:.0f} s to train or load and evaluate)")
    methods = [m for m in (args.methods.split(",") if args.methods else METHODS) if m]
    results = []
    for m in methods:
        results.append(score(run, m))
        r, mean = results[-1], results[-1]["mean"]
        ratio = _ratio(mean["acc_fixed"], mean["ceiling_fixed"])
        print(f"{m}: Acc T(IoBB)=0.5 fixed {mean['acc_fixed']:.3f} ({ratio:.2f} of its ceiling), "
              f"afp {mean['afp_fixed']:.2f}, tuned {mean['acc_tuned']:.3f}, "
              f"mIoU {mean['miou']:.3f}, hit rate {mean['hit_rate']:.3f}; {r['seconds_per_map']:.2f} s per map, "
              f"{r['wall']:.0f} s", flush=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    base = next((r for r in results if r["method"] == "cam"), results[0])
    rows = []
    for r in results:
        mean = r["mean"]
        rows.append({"method": r["method"], "acc_fixed": mean["acc_fixed"],
                     "/ceiling": _ratio(mean["acc_fixed"], mean["ceiling_fixed"]), "afp_fixed": mean["afp_fixed"],
                     "acc_tuned": mean["acc_tuned"], "/ceiling_tuned": _ratio(mean["acc_tuned"], mean["ceiling_tuned"]),
                     "/ceiling_fixed": _ratio(mean["acc_tuned"], mean["ceiling_fixed"]),
                     "miou": mean["miou"], "miou_ceiling": mean["miou_ceiling"], "hit_rate": mean["hit_rate"],
                     "hit_ceiling": mean["hit_ceiling"], "s/map": r["seconds_per_map"],
                     "x cam time": _ratio(r["seconds_per_map"], base["seconds_per_map"])})
    overview = pd.DataFrame(rows).set_index("method")
    c = base["mean"]
    print(f"\nCeiling (oracle CAM on the {args.size // 32}x{args.size // 32} CAM grid), mean over findings: "
          f"Acc T(IoBB)=0.5 {c['ceiling_fixed']:.3f} with fixed levels (on all boxed test images), "
          f"{c['ceiling_tuned']:.3f} with tuned thresholds (on the scored half); mIoU {c['miou_ceiling']:.3f}; "
          f"hit rate {c['hit_ceiling']:.3f}. Thresholds tuned on {base['tuned_on']}.")
    print("\nEvery method, mean over findings (acc: Acc at T(IoBB)=0.5; /ceiling: ratio to the oracle ceiling; "
          "afp: ChestX-ray8's average false positives per image at T=0.5. IoBB divides by the detected box, so "
          "many small boxes raise acc without localizing better: read acc with afp, mIoU and hit rate):")
    print(overview.round(3).to_string())
    for r in results:
        print(f"\n{r['method']}: per finding ({r['seconds_per_map']:.3f} s per image and finding)")
        print(r["table"].round(3).to_string())
    best = overview["miou"].idxmax()       # CheXlocalize's main figure; IoBB accuracy alone rewards small boxes
    print(f"\nbest by mIoU: {best}: Acc T(IoBB)=0.5 / ceiling = fixed {overview.loc[best, '/ceiling']:.2f}, "
          f"tuned {overview.loc[best, '/ceiling_tuned']:.2f}; mIoU {overview.loc[best, 'miou']:.3f}, hit rate "
          f"{overview.loc[best, 'hit_rate']:.3f}, afp {overview.loc[best, 'afp_fixed']:.2f}"
          + (f"; baseline cam: fixed {overview.loc['cam', '/ceiling']:.2f}, mIoU {overview.loc['cam', 'miou']:.3f}"
             if "cam" in overview.index else ""))
    real = _real_nih(run, args.nih, methods, out)
    res = {"size": args.size, "auroc": auroc, "overview": overview.to_dict(), "real": real,
           "per_method": {r["method"]: r["table"].to_dict() for r in results}}
    (out / "localization.json").write_text(json.dumps(res, indent=1, default=str))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return res


def _real_nih(run: Path, nih, methods, out: Path) -> dict:
    """The real NIH images, every method, the phantom-trained model. Images with boxes in the box
    list are scored like the phantoms. NIH boxes exist only for official test images; a folder
    without any gets the machinery check instead: each method's heatmap, mapped to the original
    file's pixels, must be finite and exactly the file's size (full 1024 px, or a downscaled copy)."""
    nih = Path(nih) if nih else Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih"
    if not (nih / "images").is_dir():
        print("\nreal NIH images: not present, skipped")
        return {}
    images = sorted(p for p in (nih / "images").iterdir() if p.suffix.lower() == ".png")
    box_files = sorted(nih.glob("BBox_List_2017.csv*"))
    boxed = set(pd.read_csv(box_files[0], usecols=[0]).iloc[:, 0]) if box_files else set()
    if boxed & {p.name for p in images}:
        return _real_nih_scored(run, nih, methods, out)
    print(f"\nReal NIH images ({nih}): none of the {len(images)} has a box in the box list (NIH boxes are "
          "on official test images only), so localization cannot be scored on them. Machinery check instead: "
          "each method's top-finding heatmap, in the original file's pixels")
    return _real_nih_machinery(run, images, methods, out)


def _real_nih_machinery(run: Path, images: list, methods, out: Path) -> dict:
    import numpy as np
    from PIL import Image

    from cxr_tf.explain.run import explain_files
    rows = {}
    for m in methods:
        t0 = time.perf_counter()
        written, skipped = explain_files(run / "model.keras", [str(p) for p in images], out / "real_nih_maps" / m,
                                         method=m, top=1)
        seconds = (time.perf_counter() - t0) / max(len(written), 1)
        right = finite = 0
        sizes = set()
        for w in written:
            heat = np.load(w["npy"])
            with Image.open(w["file"]) as im:
                size = im.size
            sizes.add(size[0])
            right += heat.shape == (size[1], size[0])
            finite += bool(np.isfinite(heat).all())
        rows[m] = {"maps": len(written), "skipped": len(skipped), "original size": right, "finite": finite,
                   "file sizes (px)": "/".join(str(v) for v in sorted(sizes)), "s/map (incl. load)": seconds}
    table = pd.DataFrame(rows).T
    print(table.to_string())
    return table.to_dict()


def _real_nih_scored(run: Path, nih: Path, methods, out: Path) -> dict:
    from cxr_tf.records.prepare import prepare
    rec = out / "records_nih_real"
    if not (rec / "summary.json").is_file():
        prepare("chestxray14", nih, rec, size=256, allow_missing=True)
    rows = {}
    for m in methods:
        r = score(run, m, records=rec, n_boot=0)
        t = r["table"]
        rows[m] = {"pairs": int(t["boxes"].sum()), "acc_fixed": r["mean"]["acc_fixed"],
                   "ceiling_fixed": r["mean"]["ceiling_fixed"], "miou (tuned half)": r["mean"]["miou"],
                   "hit_rate": r["mean"]["hit_rate"], "s/map": r["seconds_per_map"]}
    table = pd.DataFrame(rows).T
    print("\nReal NIH images with boxes (1024 px originals), phantom-trained model: machinery, not accuracy")
    print(table.round(3).to_string())
    return table.to_dict()


if __name__ == "__main__":
    main()
