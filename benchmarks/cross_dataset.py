"""Train on A, test on B, on phantoms: a model trained on each of the NIH ChestX-ray14, CheXpert and
PadChest phantoms, and one trained on the three merged (``cxr-tf merge``, masked loss), each
scored on every dataset's test split through the crosswalk (the domain-shift experiment people
run with torchxrayvision's merged datasets).

One command: ``python benchmarks/cross_dataset.py [--out runs/cross_bench] [--preset tiny]``.
Synthesizes the phantom datasets, prepares them, trains the four models, and prints the matrix
of mean AUROC over the findings each pair shares (exact and same-name pairs), each cell's ratio
to the test set's own in-domain model, and per finding on each test set the in-domain model
beside the merged one. The phantoms draw the same patterns for the shared findings, so the
off-diagonal ratios measure what the change of layout, view mix, image shape and label source
costs, and the merged row what training on all of them buys back. Phantom figures show that the
machinery works, not how real models transfer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

TRAIN_ON = ("chestxray14", "chexpert", "padchest")
TEST_ON = ("chestxray14", "chexpert", "padchest", "mimic")


def _data(out: Path, n: int, size: int) -> dict:
    """Phantom trees and records of every dataset (the others get half as many images as NIH)."""
    from cxr_tf import sources
    from cxr_tf.records.prepare import prepare

    records = {}
    for k, name in enumerate(TEST_ON):
        images = n if name == "chestxray14" else n // 2
        extra = {"test_set": True} if name == "chexpert" else {}
        info = sources.synth_writer(name)(out / name, n_images=images, n_patients=images // 3, size=size, seed=k,
                                          **extra)
        records[name] = out / f"rec_{name}"
        prepare(name, info.get("data_dir", out / name), records[name], size=size)
    return records


def main(argv=None) -> dict:
    """Run the experiment from scratch and print its tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/cross_bench")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--n", type=int, default=3000, help="NIH phantom images (the others get half as many)")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)

    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.records.merge import merge
    from cxr_tf.training.train import TrainConfig, train

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    records = _data(out, args.n, size=96)
    merge([records[d] for d in TRAIN_ON], out / "rec_merged")
    t_data = time.perf_counter() - t0
    runs, t_train = {}, {}
    for name in (*TRAIN_ON, "merged"):
        extra = dict(findings="records", blank="ignore", loss="masked_bce") if name == "merged" else {}
        if name == "chexpert":
            extra = dict(loss="masked_bce")          # U-Ignore for the phantom's uncertain labels
        cfg = TrainConfig(records=str(out / f"rec_{name}"), out=str(out / f"run_{name}"), preset=args.preset,
                          weights="none", epochs=args.epochs, batch_size=32, image_size=64, lr=1e-3, verbose=0,
                          **({"dataset": name} if name != "merged" else {}), **extra)
        t1 = time.perf_counter()
        train(cfg)
        t_train[name], runs[name] = time.perf_counter() - t1, out / f"run_{name}"

    matrix, per_finding = {}, {}
    for model, run in runs.items():
        for test, rec in records.items():
            m = evaluate(run, split="test", records=rec, n_boot=100, figures=False)
            rows = {r["finding"]: r["auroc"] for r in m["per_class"] if r["finding"] != "mean"}
            matrix[model, test] = (m["mean_auroc"], len(rows))
            per_finding[model, test] = rows

    print(f"data {t_data:.0f} s; training ({args.preset}, {args.epochs} epochs, 64 px): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in t_train.items()))
    print("mean AUROC on the test split (findings scored); ratio to the test set's own model")
    print(f"{'trained on':14s}" + "".join(f"{t:>22s}" for t in TEST_ON))
    for model in runs:
        cells = []
        for test in TEST_ON:
            auc, n = matrix[model, test]
            own = matrix.get((test, test), (None,))[0]
            ratio = f" {auc / own:4.2f}" if own else "     "
            cells.append(f"{auc:8.3f} ({n:2d}){ratio}")
        print(f"{model:14s}" + "".join(f"{c:>22s}" for c in cells))
    for test in TRAIN_ON:
        print(f"-- {test} test: in-domain model vs merged model")
        for finding, auc in per_finding[test, test].items():
            merged = per_finding["merged", test].get(finding, float("nan"))
            print(f"   {finding:30s} {auc:7.3f} {merged:7.3f}")
    print(f"wall {time.perf_counter() - t0:.0f} s")
    result = {"matrix": {f"{a} -> {b}": v for (a, b), v in matrix.items()},
              "per_finding": {f"{a} -> {b}": v for (a, b), v in per_finding.items()}}
    (out / "cross_dataset.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
