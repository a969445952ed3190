"""Benchmarks for the data spine. One command: ``python benchmarks/run.py`` (``--quick`` to smoke).

Every number is printed beside a baseline measured in the same run on the same files:

* ``cli``: cold ``cxr-tf --help`` vs a bare ``python -c pass`` and vs ``import tensorflow``;
* ``prepare``: ``cxr-tf prepare`` throughput (1 and N workers) vs a single-process
  PIL decode + resize loop (no writing);
* ``pipeline``: our tf.data training pipeline from TFRecords (uint8, one channel: the model
  normalizes) vs a naive per-image PIL open + RGB + resize + flip + normalize loop on the source
  PNGs, vs a decode-only ceiling (the same TFRecords, parse + PNG decode, nothing else), and vs
  the same pipeline finishing with the normalized float32 RGB batches it shipped before the
  normalization moved into the model.

Results are also written to ``benchmarks/out/data_spine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def _timed_runs(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_cli(runs: int = 5) -> dict:
    """Cold start of ``cxr-tf --help`` against bare Python and against importing TensorFlow."""
    exe = shutil.which("cxr-tf") or "cxr-tf"
    help_s = _timed_runs([exe, "--help"], runs)
    bare_s = _timed_runs([sys.executable, "-c", "pass"], runs)
    tf_s = _timed_runs([sys.executable, "-c", "import tensorflow"], 1)
    return {"cxr_tf_help_s": help_s, "python_bare_s": bare_s, "import_tensorflow_s": tf_s,
            "help_over_bare": help_s / bare_s, "tensorflow_over_help": tf_s / help_s}


def _pil_decode_resize(paths, size):
    from PIL import Image
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            np.asarray(img.convert("L").resize((size, size), Image.Resampling.BILINEAR))
    return len(paths) / (time.perf_counter() - t)


def bench_prepare(data: Path, work: Path, size: int, workers: int) -> dict:
    """prepare throughput vs a single-process decode+resize loop on the same PNGs."""
    from cxr_tf.records.prepare import prepare
    paths = sorted(data.glob("images_*/images/*.png"))
    base = _pil_decode_resize(paths, size)
    out = {"images": len(paths), "baseline_single_process_decode_resize_img_s": base}
    for w in sorted({1, workers}):
        t = time.perf_counter()
        prepare("chestxray14", data, work / f"rec_w{w}", size=size, workers=w)
        rate = len(paths) / (time.perf_counter() - t)
        out[f"prepare_{w}_workers_img_s"] = rate
        out[f"prepare_{w}_workers_over_baseline"] = rate / base
    out["scaling_1_to_n_workers"] = out[f"prepare_{workers}_workers_img_s"] / out["prepare_1_workers_img_s"]
    return out


def bench_pipeline(data: Path, records: Path, image_size: int, batch: int, crop: bool = True,
                   rounds: int = 3, batches: int = 200) -> dict:
    """tf.data training pipeline vs a naive PIL loop and vs a decode-only ceiling. ``crop``: flip
    and random crop (0.8-1.0 of the area, resampled to the input size); else CheXNet's flip only."""
    import tensorflow as tf
    from PIL import Image

    from cxr_tf.pipeline import Augment, make_dataset, split_files
    from cxr_tf.records.reader import load_summary

    IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    files, count, _ = split_files(records, "train")

    def rate(ds):
        """Images per second over ``batches`` batches after a warm-up batch (graph building,
        file opens, the shuffle buffer)."""
        it = iter(ds.take(batches + 1))
        next(it)
        t, n = time.perf_counter(), 0
        for b in it:
            n += int(tf.shape(b[0] if isinstance(b, tuple) else b)[0])
        return n / (time.perf_counter() - t)

    ours = make_dataset(records, "train", batch_size=batch, image_size=image_size, repeat=True,
                        augment=Augment(hflip=True, crop_scale=(0.8, 1.0) if crop else None), seed=0)
    # what the pipeline shipped before: normalized float32 RGB (a 1x1 conv on the gray batch, its
    # fastest form), here appended to the same uint8 pipeline
    kernel = tf.reshape(tf.constant(IMAGENET_STD) ** -1 / 255.0, [1, 1, 1, 3])
    bias = -tf.constant(IMAGENET_MEAN) / tf.constant(IMAGENET_STD)
    old = ours.map(lambda x, y: (tf.nn.bias_add(tf.nn.conv2d(tf.cast(x, tf.float32), kernel, 1, "VALID"), bias), y),
                   num_parallel_calls=tf.data.AUTOTUNE)
    first = next(iter(ours))[0]
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    ceiling = (tf.data.Dataset.from_tensor_slices(files)
               .interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .map(lambda s: tf.io.decode_png(tf.io.parse_single_example(s, spec)["image"]),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .repeat().batch(batch).prefetch(tf.data.AUTOTUNE))
    # stage breakdown: the same decode plus the batch resize to the model size, one channel
    resized = ceiling.map(lambda x: tf.image.resize(tf.cast(x, tf.float32), [image_size, image_size]),
                          num_parallel_calls=tf.data.AUTOTUNE)
    variants = {"ours": ours, "old": old, "ceiling": ceiling, "resized": resized}
    runs = {name: [] for name in variants}
    for _ in range(rounds):   # interleaved rounds, median of each: this machine's speed drifts
        for name, ds in variants.items():
            runs[name].append(rate(ds))
    ours_rate, old_rate, ceiling_rate, resized_rate = (statistics.median(runs[k]) for k in variants)

    import pandas as pd
    man = pd.read_csv(records / "manifest.csv")
    paths = [data / p for p in man.loc[man["split"] == "train", "path"]]
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for p in paths:   # what most reimplementations do, one image at a time
        x = np.asarray(Image.open(p).convert("RGB").resize((image_size, image_size)), np.float32) / 255
        if rng.random() < 0.5:
            x = x[:, ::-1]
        x = (x - mean) / std
    naive_rate = len(paths) / (time.perf_counter() - t)
    return {"train_images": count, "image_size": image_size, "batch": batch,
            "stored_size": int(load_summary(records)["config"]["size"]),
            "augment": "flip + random crop 0.8-1.0" if crop else "flip (CheXNet)",
            "pipeline_img_s": ours_rate, "decode_ceiling_img_s": ceiling_rate,
            "batch_dtype": first.dtype.name, "batch_bytes": int(first.numpy().nbytes),
            "float32_rgb_batch_bytes": int(first.numpy().size * 3 * 4),
            "old_float32_rgb_pipeline_img_s": old_rate, "pipeline_over_old_float32_rgb": ours_rate / old_rate,
            "stage_decode_resize_1ch_img_s": resized_rate,
            "naive_pil_img_s": naive_rate, "pipeline_over_naive": ours_rate / naive_rate,
            "pipeline_over_ceiling": ours_rate / ceiling_rate}


def main(argv=None) -> dict:
    """Run the benchmarks and print a table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="phantom images (default 2000)")
    ap.add_argument("--size", type=int, default=1024, help="phantom PNG side (default 1024)")
    ap.add_argument("--store", type=int, default=256, help="prepare --size (default 256)")
    ap.add_argument("--image-size", type=int, default=224, help="pipeline output size")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="200 images of 256 px: a smoke run")
    ap.add_argument("--only", default="cli,prepare,pipeline")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.size = 200, 256
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CXR_TF_PROGRESS", "0")
    only = set(args.only.split(","))
    results = {"config": vars(args), "cpus": os.cpu_count()}
    if "cli" in only:
        results["cli"] = bench_cli()
        _print("cli", results["cli"])
    if only & {"prepare", "pipeline"}:
        from cxr_tf.datasets.chestxray14.phantom import write_dataset
        with tempfile.TemporaryDirectory(prefix="cxr_bench_") as tmp:
            work = Path(tmp)
            t = time.perf_counter()
            write_dataset(work / "nih", n_images=args.n, size=args.size, seed=0)
            results["synth_s"] = time.perf_counter() - t
            print(f"synthesized {args.n} phantoms of {args.size} px in {results['synth_s']:.1f} s")
            results["prepare"] = bench_prepare(work / "nih", work, args.store, args.workers)
            _print("prepare", results["prepare"])
            if "pipeline" in only:
                results["pipeline"] = bench_pipeline(work / "nih", work / f"rec_w{args.workers}",
                                                     args.image_size, args.batch)
                _print("pipeline", results["pipeline"])
                # CheXNet's recipe as reproductions/chexnet.toml states it: its stored size, input
                # size and augmentation (the paper's: stored at 224, random flip only)
                from cxr_tf.core import cards
                from cxr_tf.records.prepare import prepare
                recipe = cards.reproduction("chexnet")
                store, size = int(recipe["prepare"]["size"]), int(recipe["train"]["image_size"])
                prepare("chestxray14", work / "nih", work / "rec_recipe", size=store, workers=args.workers)
                results["pipeline_recipe"] = bench_pipeline(work / "nih", work / "rec_recipe", size,
                                                            int(recipe["train"].get("batch_size", args.batch)),
                                                            crop=bool(recipe["train"].get("crop_scale")))
                _print("pipeline_recipe", results["pipeline_recipe"])
    OUT.mkdir(exist_ok=True)
    (OUT / "data_spine.json").write_text(json.dumps(results, indent=2))
    return results


def _print(name: str, res: dict) -> None:
    print(f"== {name}")
    for k, v in res.items():
        print(f"  {k:45s} {v:10.3f}" if isinstance(v, float) else f"  {k:45s} {v!s:>10}")


if __name__ == "__main__":
    main()
