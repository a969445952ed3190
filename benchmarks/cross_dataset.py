"""Cross-dataset evaluation on phantoms: a model trained on the NIH ChestX-ray14 phantom, scored on
its own test split and, through the crosswalk, on the CheXpert and MIMIC-CXR-JPG phantoms (the
domain-shift experiment people run with torchxrayvision).

One command: ``python benchmarks/cross_dataset.py [--out runs/cross_bench] [--preset tiny]``.
Synthesizes the three phantom datasets, prepares them, trains one model on NIH, evaluates it on
each, and prints per-finding AUROC side by side with each shared finding's ratio to the NIH-test
AUROC of the output that answers it. The phantoms draw the same patterns for the shared findings,
so the ratio measures what the change of layout, view mix, image shape and label source costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main(argv=None) -> dict:
    """Run the experiment from scratch and print its table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/cross_bench")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--n", type=int, default=3000, help="NIH phantom images (the others get half as many)")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)

    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.records.prepare import prepare
    from cxr_tf.datasets.chestxray14 import phantom as chestxray14
    from cxr_tf.datasets.chexpert import phantom as chexpert
    from cxr_tf.datasets.mimic import phantom as mimic
    from cxr_tf.training.train import TrainConfig, train

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    size = 96
    chestxray14.write_dataset(out / "nih", n_images=args.n, n_patients=args.n // 3, size=size, seed=0)
    half = args.n // 2
    cxp = chexpert.write_dataset(out / "chexpert", n_images=half, n_patients=half // 3, size=size, seed=1,
                                 test_set=True)
    mimic.write_dataset(out / "mimic", n_images=half, n_patients=half // 4, size=size, seed=2)
    prepare("chestxray14", out / "nih", out / "rec_nih", size=size)
    prepare("chexpert", cxp["data_dir"], out / "rec_chexpert", size=size)
    prepare("mimic", out / "mimic", out / "rec_mimic", size=size)
    prepare("mimic", out / "mimic", out / "rec_mimic_radiologist", size=size, options={"test_labels": "radiologist"})
    t_data = time.perf_counter() - t0
    cfg = TrainConfig(records=str(out / "rec_nih"), out=str(out / "run"), preset=args.preset, weights="none",
                      epochs=args.epochs, batch_size=32, image_size=64, lr=1e-3, verbose=0)
    t1 = time.perf_counter()
    train(cfg)
    t_train = time.perf_counter() - t1
    own = evaluate(out / "run", split="test", n_boot=200, figures=False)
    own_auc = {r["finding"]: r["auroc"] for r in own["per_class"]}
    results = {"chestxray14 test": own_auc}
    keys = []
    for name, split in (("chexpert", "test"), ("mimic", "test"), ("mimic_radiologist", "test")):
        m = evaluate(out / "run", split=split, records=out / f"rec_{name}", n_boot=200, figures=False)
        key = f"{name} {split}"
        keys.append(key)
        results[key] = {r["finding"]: (r["auroc"], r["model_output"], r["positives"], r["n"]) for r in m["per_class"]
                        if r["finding"] != "mean"}
        results[key]["mean"] = (m["mean_auroc"], "", "", "")
        results[f"{key} labels"] = m["labels"] or "radiologist (valid/test CSVs)"
    print(f"data {t_data:.0f} s, training {t_train:.0f} s ({args.preset}, {args.epochs} epochs, 64 px)")
    print(f"{'finding (records)':24s} {'answered by':18s} {'pos/n':>9s} {'AUROC':>7s} {'NIH test':>9s} {'ratio':>6s}")
    for key in keys:
        print(f"-- {key} ({results[key + ' labels']})")
        used = [own_auc[v[1]] for f, v in results[key].items() if f != "mean"]
        for finding, (auc, output, pos, n) in results[key].items():
            ref = own_auc[output] if output else sum(used) / len(used)   # mean: over the same outputs on NIH
            counts = f"{pos}/{n}" if output else ""
            print(f"{finding:24s} {output:18s} {counts:>9s} {auc:7.3f} {ref:9.3f} {auc / ref:6.2f}")
    print(f"NIH test mean AUROC (14 findings) {own['mean_auroc']:.3f}; wall {time.perf_counter() - t0:.0f} s")
    (out / "cross_dataset.json").write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
