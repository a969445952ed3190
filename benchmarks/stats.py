"""Seconds of ``cxr-tf stats`` on the full NIH label file (112,120 rows, ``../shared/data/nih``).

One command: ``python benchmarks/stats.py [--data-dir ../shared/data/nih]``. Times, in the same
run (median of interleaved rounds): the floor, a bare ``pandas.read_csv`` of the label file with
one ``str.split`` of its labels; ``stats`` without figures (the source's parsing, the split, every
table); and ``stats`` with all figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv=None) -> dict:
    """Time the three and print seconds and ratios."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nih"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import pandas as pd

    from cxr_tf.studies.stats import stats

    label_file = Path(args.data_dir) / "Data_Entry_2017_v2020.csv.gz"
    out = Path(tempfile.mkdtemp())
    times = {"pandas_read_floor": [], "stats_tables": [], "stats_with_figures": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        pd.read_csv(label_file)["Finding Labels"].str.split("|")
        times["pandas_read_floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        stats(out / "t", dataset="chestxray14", data_dir=args.data_dir, figures_too=False)
        times["stats_tables"].append(time.perf_counter() - t)
        t = time.perf_counter()
        counts = stats(out / "f", dataset="chestxray14", data_dir=args.data_dir)
        times["stats_with_figures"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"images": counts["images"], **{f"{k}_s": v for k, v in med.items()},
           "tables_vs_floor": med["stats_tables"] / med["pandas_read_floor"],
           "figures_vs_floor": med["stats_with_figures"] / med["pandas_read_floor"]}
    for k, v in res.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    return res


if __name__ == "__main__":
    main()
