"""Wall time and phantom AUROC of ``cxr-tf reproduce <paper> --demo`` on this machine.

One command: ``python benchmarks/demo.py [--paper chexnet|chestxray8|chexpert|weak-labels] [--out runs/demo_bench]``.
Prints the wall time of the whole demo (synthesis, prepare, training, evaluation, localization,
report) against the 10-minute budget, the mean test AUROC against the 0.90 goal, the first-step
and steady-state timing the run recorded, and the phantom localization accuracy at T(IoBB)=0.5
beside the ceiling of the model's CAM grid. For chexpert (one run per uncertainty policy) it
prints each policy's mean AUROC over the 5 competition tasks instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path


def main(argv=None) -> dict:
    """Run the demo from scratch and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paper", default="chexnet", choices=["chexnet", "chestxray8", "chexpert", "weak-labels"])
    ap.add_argument("--out", default="runs/demo_bench")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run(["cxr-tf", "reproduce", args.paper, "--demo", "--out", str(out)], check=True)
    wall = time.perf_counter() - t
    if args.paper == "weak-labels":    # a study: one run per backbone, budget 15 minutes
        res = {"wall_s": wall, "budget_s": 900, "wall_over_budget": wall / 900}
        for k, v in res.items():
            print(f"{k:34s} {v:.3f}")
        report = (out / "report.md").read_text()
        print(report[report.index("## Labeler agreement"):report.index("Thresholds:")])
        return res
    if not (out / "run").is_dir():     # one run per policy
        res = {"wall_s": wall, "budget_s": 600, "wall_over_budget": wall / 600}
        for run in sorted((out / "runs").iterdir()):
            timing = json.loads((run / "timing.json").read_text())
            res[f"{run.name}_first_step_s"] = timing["first_step_s"]
            res[f"{run.name}_steady_images_per_s"] = timing["steady_images_per_s"]
        for k, v in res.items():
            print(f"{k:34s} {v:.3f}" if isinstance(v, float) else f"{k:34s} {v}")
        report = (out / "report.md").read_text()
        print(report[report.index("| Task |"):report.index("Paper means")])
        return res
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    timing = json.loads((out / "run" / "timing.json").read_text())
    res = {"wall_s": wall, "budget_s": 600, "wall_over_budget": wall / 600,
           "mean_auroc": metrics["mean_auroc"], "goal_auroc": 0.90, **timing}
    for k, v in res.items():
        print(f"{k:22s} {v:.3f}" if isinstance(v, float) else f"{k:22s} {v}")
    loc = out / "run" / "localization_summary.csv"
    if loc.is_file():
        import pandas as pd
        s = pd.read_csv(loc)
        s = s[s["T"] == 0.5][["finding", "boxes", "accuracy", "ceiling_accuracy", "pointing"]]
        print("\nphantom localization, CAM, T(IoBB)=0.5 (ceiling: oracle CAM on the same grid):")
        print(s.to_string(index=False))
        res["localization"] = s.to_dict(orient="records")
    return res


if __name__ == "__main__":
    main()
