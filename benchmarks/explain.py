"""Seconds per image for each heatmap method on DenseNet121 at 224 px (CPU), and the phantom
localization table of a trained demo run.

One command: ``python benchmarks/explain.py [--size 224] [--batch 4] [--run runs/demo/run]``.
Timing uses random weights (cost does not depend on them); each method is timed on one batch after
a warm-up call, and reported per image and as a ratio to plain CAM measured in the same run.
With ``--run`` it also scores localization on that run's phantom test boxes for ``--localize``
methods (default CAM and Grad-CAM), beside the pointing game and the oracle ceiling of the model's
feature grid (``cxr_tf.explain.localize``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None) -> dict:
    """Time every method; optionally score localization of a run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--run", default=None)
    ap.add_argument("--time", default="all", help="comma-separated methods to time ('all', or 'none')")
    ap.add_argument("--localize", default="cam,gradcam", help="comma-separated methods to score with --run")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cxr_tf.explain import METHODS, heatmaps
    from cxr_tf.models import build_model
    model = build_model("chexnet", weights=None, image_size=args.size)
    x = np.random.default_rng(0).integers(0, 256, size=(args.batch, args.size, args.size, 1)).astype(np.float32)
    targets = list(range(args.batch))
    res = {}
    timed = METHODS if args.time == "all" else () if args.time == "none" else tuple(args.time.split(","))
    for method in timed:
        opts = {"samples": 200} if method == "lime" else {}
        if method != "lime":
            heatmaps(model, x[:1], targets[:1], method, **opts)   # warm-up: tracing, model clone
        t = time.perf_counter()
        heatmaps(model, x, targets, method, **opts)
        res[method] = (time.perf_counter() - t) / args.batch
    for method, s in res.items():
        print(f"{method:11s} {s:8.2f} s/image   {s / res.get('cam', s):8.1f} x CAM")
    if args.run:
        from cxr_tf.explain.localize import localize_run
        for method in args.localize.split(","):
            s = localize_run(args.run, method, write=False).summary
            print(f"\nlocalization ({method}) accuracy at T(IoBB)=0.5:")
            print(s[s["T"] == 0.5][["finding", "accuracy", "avg_false_positives", "boxes", "pointing",
                                     "ceiling_accuracy"]].to_string(index=False))
            res[f"localization_{method}"] = s.to_dict(orient="records")
    return res


if __name__ == "__main__":
    main()
