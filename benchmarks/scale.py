"""Benchmarks past one machine (issue 22): one command, ``python benchmarks/scale.py`` (``--quick`` to
smoke). Results are also written to ``benchmarks/out/scale.json``.

* ``data_service``: the training pipeline (:func:`cxr_tf.pipeline.make_dataset`, CheXNet's flip,
  batch 16) reading a phantom records directory in this process, against the same pipeline with
  its reading and decoding on a tf.data service of one dispatcher and 2 workers on this machine
  (``distributed_epoch``, :func:`cxr_tf.pipeline.start_dispatcher` / ``start_worker``, in this
  process), in images/s over whole epochs, interleaved rounds, median. On one machine the service
  can only add cost (the same cores, plus gRPC and copies): the ratio measures that overhead, which
  a trainer pays for the cores the service adds elsewhere.
* ``prepare``: the process pool with 1 and 2 workers against the Beam DirectRunner: the section
  from ``benchmarks/scale_beam.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def bench_data_service(records: Path, image_size: int, batch: int, rounds: int, workers: int = 2) -> dict:
    """Images/s of the training pipeline in process vs through a local tf.data service."""
    from cxr_tf.pipeline import Augment, make_dataset, start_dispatcher, start_worker

    dispatcher = start_dispatcher()
    address = dispatcher.target.split("://")[-1]
    servers = [start_worker(address) for _ in range(workers)]
    kw = dict(batch_size=batch, image_size=image_size, augment=Augment(hflip=True), seed=0, drop_remainder=True)
    variants = {"in_process": make_dataset(records, "train", **kw),
                "data_service": make_dataset(records, "train", data_service=address, **kw)}

    def epoch_rate(ds) -> float:
        t, n = time.perf_counter(), 0
        for x, _ in ds:
            n += int(x.shape[0])
        return n / (time.perf_counter() - t)

    for ds in variants.values():          # warm-up epoch: graph building, file opens, worker start
        epoch_rate(ds)
    runs = {k: [] for k in variants}
    for _ in range(rounds):
        for name, ds in variants.items():
            runs[name].append(epoch_rate(ds))
    for server in (*servers, dispatcher):
        server.stop()
    res = {f"{k}_img_s": statistics.median(v) for k, v in runs.items()}
    res.update({"service_workers": workers, "rounds": rounds, "image_size": image_size, "batch": batch,
                "data_service_over_in_process": res["data_service_img_s"] / res["in_process_img_s"]})
    return res


# ---- prepare: the pool with 1 and 2 workers vs the Beam DirectRunner ------------------------------------
def bench_prepare_runners(work: Path, quick: bool = False) -> dict | None:
    """Pool (1 and 2 workers) vs Beam DirectRunner images/s for ``prepare``
    (``benchmarks/scale_beam.py``, on its own 1024-px phantom tree); None without apache-beam."""
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        return None
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale_beam
    res = scale_beam.prepare_runners(n=60 if quick else 300, rounds=1 if quick else 2, root=work)
    for line in scale_beam.report(res):
        print(line)
    return res


def main(argv=None) -> dict:
    """Run the benchmarks and print a table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="phantom images (default 400)")
    ap.add_argument("--size", type=int, default=256, help="phantom PNG side (default 256)")
    ap.add_argument("--store", type=int, default=224, help="prepare --size (default 224: the input size)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed epochs of each (default 3)")
    ap.add_argument("--quick", action="store_true", help="120 images of 128 px, 1 round: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size, args.store, args.rounds = 120, 128, 112, 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    from cxr_tf.datasets.chestxray14.phantom import write_dataset
    from cxr_tf.records.prepare import prepare

    results = {"config": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="cxr_scale_") as tmp:
        work = Path(tmp)
        write_dataset(work / "nih", n_images=args.n, size=args.size, seed=0)
        summary = prepare("chestxray14", work / "nih", work / "rec", size=args.store, split="random", seed=0)
        results["records"] = {"images": summary["counts"]["written_images"], "stored_size": args.store,
                              "bytes_per_image": sum(s["bytes"] for s in summary["shards"].values())
                              / summary["counts"]["written_images"]}
        _print("records", results["records"])
        beam = bench_prepare_runners(work, args.quick)
        if beam is not None:
            results["prepare_runners"] = beam
        else:
            print("prepare: pool vs Beam DirectRunner: skipped (install the beam extra)")
        results["data_service"] = bench_data_service(work / "rec", args.store, args.batch, args.rounds)
        _print("training pipeline: in process vs tf.data service, 2 local workers (images/s)",
               results["data_service"])
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(results, indent=2))
    return results


def _print(name: str, res: dict) -> None:
    print(f"== {name}")
    for k, v in res.items():
        print(f"  {k:44s} {v:10.3f}" if isinstance(v, float) else f"  {k:44s} {v!s:>10s}")


if __name__ == "__main__":
    main()
