"""Is weak localization limited by the model or by the CAM's resolution? Train the CheXNet demo
recipe on the same phantoms at two input sizes and score CAM localization at each.

One command: ``python benchmarks/localization_scale.py [--sizes 128,256] [--epochs 6] [--out DIR]``.

Phantoms are drawn once at the largest size; each size gets its own records (``prepare``), the
demo's training recipe (DenseNet121 from scratch, Adam 1e-3, BCE, batch 16, flip, plateau, best
validation loss), evaluation and ``localize_run`` with CAM. The baseline is the smallest size (the
demo's 128 px) measured in the same run. Printed per finding at T(IoBB) = 0.5: accuracy, the
oracle-CAM ceiling of that size's feature grid, the pointing-game rate, and the ratio of the
larger size's accuracy to the baseline's. At 256 px this takes about half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd


def run_size(data_dir: Path, out: Path, size: int, epochs: int) -> dict:
    """prepare -> train -> evaluate -> localize at one input size; returns timings and tables."""
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.explain.localize import localize_run
    from cxr_tf.records.prepare import prepare
    from cxr_tf.studies.reproduce import resolve
    from cxr_tf.training.train import TrainConfig, train
    cfg, _ = resolve("chexnet", demo=True, overrides={"image_size": size, "epochs": epochs})
    records, run = out / f"records_{size}", out / f"run_{size}"
    t0 = time.perf_counter()
    if not (records / "summary.json").is_file():
        prepare("chestxray14", data_dir, records, size=size)
    train(TrainConfig.from_mapping({**cfg.given_values(), "records": str(records), "out": str(run), "verbose": 0}))
    metrics = evaluate(run, split="test", n_boot=100, figures=False)
    s = localize_run(run, "cam").summary
    return {"size": size, "seconds": time.perf_counter() - t0, "mean_auroc": metrics["mean_auroc"],
            "summary": s[s["T"] == 0.5].set_index("finding")}


def main(argv=None) -> dict:
    """Run every size and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--out", default="runs/localization_scale")
    args = ap.parse_args(argv)
    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = Path(args.out)
    data_dir = out / "phantom"
    if not (data_dir / "Data_Entry_2017_v2020.csv").is_file():
        from cxr_tf.datasets.chestxray14.phantom import write_dataset
        write_dataset(data_dir, n_images=args.images, n_patients=args.images // 3, size=max(sizes), seed=0)
    results = [run_size(data_dir, out, size, args.epochs) for size in sizes]
    base = results[0]["summary"]
    cols = {}
    for r in results:
        s = r["summary"]
        tag = f"{r['size']}px"
        cols[f"acc {tag}"] = s["accuracy"]
        cols[f"ceiling {tag}"] = s["ceiling_accuracy"]
        cols[f"pointing {tag}"] = s["pointing"]
        if r is not results[0]:
            cols[f"acc {tag} / acc {results[0]['size']}px"] = pd.Series(
                [f"{a / b:.2f}" if b > 0 else ("from 0" if a > 0 else "0 and 0")
                 for a, b in zip(s["accuracy"], base["accuracy"].reindex(s.index))], index=s.index)
    table = pd.DataFrame({"boxes": base["boxes"], **cols})
    pd.set_option("display.width", 220)
    print("\nCAM localization on phantoms, T(IoBB) = 0.5, by input size (ceiling: oracle CAM on the same grid)")
    print(table.round(3).to_string())
    for r in results:
        print(f"{r['size']}px: mean test AUROC {r['mean_auroc']:.4f}, {r['seconds'] / 60:.1f} min "
              f"(prepare + train + evaluate + localize)")
    res = {"table": table.to_dict(), "runs": [{k: v for k, v in r.items() if k != "summary"} for r in results]}
    (out / "localization_scale.json").write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
