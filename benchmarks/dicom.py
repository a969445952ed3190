"""Benchmark of ``cxr-tf dicom``: one command, ``python benchmarks/dicom.py`` (``--quick`` to smoke).

Generates ``--n`` realistic-size radiographs (2048x2048, 12 bits stored) in a temporary folder, a
mix of Explicit VR Little Endian, RLE Lossless and JPEG 2000 Lossless, half MONOCHROME1, each with
made-up identifiers (``cxr_tf.synth.phi``), then times the conversion with ``--png`` (in-process
:func:`cxr_tf.dicom.tool.convert`: read, decode, display pipeline, de-identify, PNG) at 1 worker
and at 2 workers, in interleaved rounds so that machine load hits both alike; prints the median
seconds per file of each and the ratio. Results are also written to ``benchmarks/out/dicom.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
SYNTAXES = ("ExplicitVRLittleEndian", "RLELossless", "JPEG2000Lossless")


def chest(size: int, seed: int, photometric: str) -> np.ndarray:
    """A phantom chest: dark lungs, bright mediastinum and ribs, detector noise; 12-bit values."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    lungs = np.exp(-(((x - 0.3) / 0.13) ** 2 + ((y - 0.5) / 0.28) ** 2)) + np.exp(
        -(((x - 0.7) / 0.13) ** 2 + ((y - 0.5) / 0.28) ** 2))
    ribs = 0.08 * (np.sin(y * 60) > 0.6)
    img = 3300 - 2300 * lungs + 500 * ribs + rng.normal(0, 25, (size, size))
    img = np.clip(img, 0, 4095).astype(np.uint16)
    return (4095 - img).astype(np.uint16) if photometric == "MONOCHROME1" else img


def write_files(folder: Path, n: int, size: int) -> dict:
    """Write ``n`` identified DICOM files; returns how many of each transfer syntax."""
    import pydicom.uid as uids

    from cxr_tf.synth.phi import identified_dataset

    counts: dict = {}
    for i in range(n):
        syntax = SYNTAXES[i % len(SYNTAXES)]
        photometric = "MONOCHROME1" if (i // len(SYNTAXES)) % 2 else "MONOCHROME2"
        pixels = chest(size, i, photometric)
        ds = identified_dataset(1 + i % 8, i, pixels=pixels, photometric=photometric)
        if syntax == "RLELossless":
            ds.compress(uids.RLELossless, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        elif syntax == "JPEG2000Lossless":
            ds.compress(uids.JPEG2000Lossless, pixels, generate_instance_uid=False)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        (folder / f"img_{i:03d}.dcm").write_bytes(buf.getvalue())
        counts[syntax] = counts.get(syntax, 0) + 1
    return counts


def run(n: int, size: int, rounds: int, workers: int) -> dict:
    """Generate the files and time the conversion at 1 and ``workers`` workers."""
    from cxr_tf.dicom.tool import convert

    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    work = Path(tempfile.mkdtemp(prefix="cxr_dicom_bench_"))
    try:
        src = work / "in"
        src.mkdir()
        t = time.perf_counter()
        counts = write_files(src, n, size)
        gen_s = time.perf_counter() - t
        mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6
        times: dict = {1: [], workers: []}
        for r in range(rounds):
            for w in ([1, workers] if r % 2 == 0 else [workers, 1]):      # interleaved
                out = work / f"out_{w}_{r}"
                t = time.perf_counter()
                summary = convert([src], out, image_format="png", salt="benchmark", workers=w)
                times[w].append((time.perf_counter() - t) / n)
                assert summary["converted"] == n, summary
                shutil.rmtree(out)
        one, many = statistics.median(times[1]), statistics.median(times[workers])
        return {"files": n, "size": size, "syntaxes": counts, "input_mb": round(mb, 1),
                "generate_s": round(gen_s, 1), "rounds": rounds, "cpus": os.cpu_count(),
                "s_per_file_1_worker": one, f"s_per_file_{workers}_workers": many,
                f"speedup_{workers}_workers_over_1": one / many,
                "all_s_per_file": {str(k): v for k, v in times.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    """Run the benchmark and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="files [64]")
    ap.add_argument("--size", type=int, default=2048, help="image side in pixels [2048]")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds [3]")
    ap.add_argument("--workers", type=int, default=2, help="parallel workers to compare with 1 [2]")
    ap.add_argument("--quick", action="store_true", help="smoke run: 6 files of 256 px, 1 round")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.rounds = 6, 256, 1
    res = run(args.n, args.size, args.rounds, args.workers)
    w = args.workers
    print(f"cxr-tf dicom --png: {res['files']} files of {res['size']}x{res['size']} 12-bit "
          f"({', '.join(f'{v} {k}' for k, v in res['syntaxes'].items())}; {res['input_mb']} MB), "
          f"median of {res['rounds']} interleaved rounds, {res['cpus']} CPUs")
    print(f"  1 worker : {res['s_per_file_1_worker']:.3f} s/file")
    print(f"  {w} workers: {res[f's_per_file_{w}_workers']:.3f} s/file")
    print(f"  {w} workers vs 1: {res[f'speedup_{w}_workers_over_1']:.2f}x faster")
    from cxr_tf.core.atomic import write_json
    write_json(OUT / "dicom.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
