"""Benchmark of ``cxr-tf prepare`` on its two runners: ``python benchmarks/scale_beam.py``
(``--quick`` to smoke). ``benchmarks/scale.py`` calls :func:`prepare_runners` and prints its lines.

Writes a phantom ChestX-ray14 tree (``--n`` images, ``--orig`` px originals) in a temporary folder,
then times ``prepare`` (stored at ``--size`` px, PNG) with the process pool at 1 and 2 workers and
with the Apache Beam DirectRunner in multi-process mode with 2 workers, in interleaved rounds so
that machine load hits all alike. Prints the median images/s of each and the ratios. The Beam
figure includes the pipeline's start-up (its worker processes: a few seconds, paid once per run),
which a longer run amortizes; that fixed part, timed on a 2-image run, is printed too. Results are
also written to ``benchmarks/out/scale_beam.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
RUNNERS = (("pool, 1 worker", "pool", 1), ("pool, 2 workers", "pool", 2), ("beam DirectRunner, 2 workers", "beam", 2))


def _time_prepare(data: Path, out: Path, runner: str, workers: int, size: int) -> float:
    """Seconds for one prepare into a fresh ``out``."""
    from cxr_tf.records.prepare import prepare

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    s = prepare("chestxray14", data, out, size=size, workers=workers, runner=runner, images_per_shard=64)
    dt = time.perf_counter() - t
    assert s["counts"]["written_images"] == s["counts"]["listed_images"]
    return dt


def prepare_runners(n: int = 300, orig: int = 1024, size: int = 256, rounds: int = 2, root: Path | None = None) -> dict:
    """Median images/s of prepare with the pool (1 and 2 workers) and the Beam DirectRunner
    (multi-process, 2 workers) on one phantom NIH tree of ``n`` images at ``orig`` px, stored at
    ``size`` px; with ratios and the Beam run's fixed start-up (a 2-image run)."""
    from cxr_tf.datasets.chestxray14.phantom import write_dataset

    tmp = Path(tempfile.mkdtemp(prefix="cxr_scale_beam_", dir=root))
    try:
        data = tmp / "nih"
        write_dataset(data, n_images=n, size=orig, seed=0, workers=2)
        times: dict[str, list[float]] = {label: [] for label, _, _ in RUNNERS}
        for _ in range(rounds):
            for label, runner, workers in RUNNERS:
                times[label].append(_time_prepare(data, tmp / "rec", runner, workers, size))
        rate = {label: n / statistics.median(t) for label, t in times.items()}
        small = tmp / "small"
        write_dataset(small, n_images=2, n_patients=2, size=orig, seed=1, workers=1)
        startup = statistics.median(_time_prepare(small, tmp / "rec_small", "beam", 2, size) for _ in range(rounds))
        pool2, beam = rate["pool, 2 workers"], rate["beam DirectRunner, 2 workers"]
        return {"images": n, "orig_px": orig, "stored_px": size, "rounds": rounds, "cores": os.cpu_count(),
                "seconds": times, "images_per_s": rate,
                "ratio_pool2_over_pool1": pool2 / rate["pool, 1 worker"],
                "ratio_beam2_over_pool1": beam / rate["pool, 1 worker"],
                "ratio_beam2_over_pool2": beam / pool2,
                "beam_startup_s": startup,
                "beam_images_per_s_without_startup": n / max(1e-9, statistics.median(
                    times["beam DirectRunner, 2 workers"]) - startup)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(res: dict) -> list[str]:
    """The benchmark's printed lines."""
    lines = [f"prepare chestxray14: {res['images']} images, {res['orig_px']} px originals stored at "
             f"{res['stored_px']} px PNG, median of {res['rounds']} interleaved rounds, {res['cores']} cores"]
    for label, r in res["images_per_s"].items():
        lines.append(f"  {label:30s} {r:7.1f} images/s")
    lines += [f"  pool 2 workers / pool 1 worker : {res['ratio_pool2_over_pool1']:.2f}x",
              f"  beam 2 workers / pool 1 worker : {res['ratio_beam2_over_pool1']:.2f}x",
              f"  beam 2 workers / pool 2 workers: {res['ratio_beam2_over_pool2']:.2f}x",
              f"  beam start-up (a 2-image run)  : {res['beam_startup_s']:.1f} s; beam without it "
              f"{res['beam_images_per_s_without_startup']:.1f} images/s"]
    return lines


def main(argv=None) -> int:
    """Run the benchmark and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="images [300]")
    ap.add_argument("--orig", type=int, default=1024, help="side of the original images in pixels [1024]")
    ap.add_argument("--size", type=int, default=256, help="stored side in pixels [256]")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds [2]")
    ap.add_argument("--quick", action="store_true", help="smoke run: 24 images of 256 px, 1 round")
    args = ap.parse_args(argv)
    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    if args.quick:
        args.n, args.orig, args.size, args.rounds = 24, 256, 64, 1
    res = prepare_runners(args.n, args.orig, args.size, args.rounds)
    print("\n".join(report(res)))
    from cxr_tf.core.atomic import write_json
    write_json(OUT / "scale_beam.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
