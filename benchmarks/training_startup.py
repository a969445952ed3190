"""Where the first Keras training step's time goes, and what cxr_tf's fast start saves.

One command: ``python benchmarks/training_startup.py [--size 224] [--batch 16] [--steps 6]``.
Each variant runs in a fresh process (graph settings are process-global) on DenseNet121 with
random weights and an in-memory batch, and reports the wall time of the first step (from calling
``fit`` until the first batch's logs are ready: set-up, tracing, graph optimization and the first
run; the whole first ``fit(steps_per_epoch=1)`` call, whose return also waits for Keras' tear-down,
is reported beside it as ``first_fit_call_s``) and the median of the following steps:

* ``keras_xla``: ``compile(jit_compile=True)``, XLA; the configuration that costs 90-130 s here;
* ``keras_plain``: ``compile(jit_compile=False)`` with ``keras.optimizers.Adam`` and Keras' own
  BatchNormalization;
* ``cxr_tf``: what ``cxr-tf train`` does: no XLA, optimizer built before tracing, the fused Adam
  kernel (one op per variable instead of ~20, its scalars made once per step), the fused
  BatchNorm kernel (one op each way instead of ~50), one traced function per step instead of
  Keras' two nested ones, and Grappler's meta-optimizer off on CPU;
* ``cxr_tf_bf16`` and ``torch_bf16`` (not run by default): the same under bfloat16 mixed
  precision (Keras' ``mixed_bfloat16`` policy; ``torch.autocast("cpu", torch.bfloat16)``), which
  pays off on CPUs with AMX or AVX512-BF16;
* ``torch``: torchvision's DenseNet121 with ``torch.optim.Adam`` on the same batch shape, when
  torch and torchvision are importable (eager PyTorch: no tracing, so its first step is the
  reference for what a first step can cost).

The Keras variants feed the model what the cxr_tf pipeline ships: uint8 grayscale
[B, H, W, 1]; the model casts, expands to RGB and normalizes in its first layers. Ratios are
against ``keras_xla`` and against ``torch``, measured in the same run. This host's speed drifts
by tens of percent over minutes, so ``torch`` and ``cxr_tf`` run ``--repeats`` times, interleaved,
and the ratios are the medians of each round's ratio (each round's pair ran back to back).
The CPU model and the flags that decide the kernels are printed first: which CPU runs the code
decides the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

VARIANT = r'''
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
variant, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ours = variant.startswith("cxr_tf")
if ours:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
if variant.endswith("_bf16"):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
from cxr_tf.models import build_model
from cxr_tf.models.layers import FusedBatchNormalization
from cxr_tf.models.optimizers import FusedAdam
keras.utils.set_random_seed(0)
model = build_model("chexnet", weights=None, image_size=size)
if not ours:   # plain Keras: its own BatchNormalization
    for layer in model.layers:
        if type(layer) is FusedBatchNormalization:
            layer.__class__ = keras.layers.BatchNormalization
opt = FusedAdam(1e-3) if ours else keras.optimizers.Adam(1e-3)
model.compile(opt, "binary_crossentropy", jit_compile=(variant == "keras_xla"))
if ours:
    from cxr_tf.training.step import use_flat_train_function
    model.optimizer.build(model.trainable_variables)
    use_flat_train_function(model)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (batch, size, size, 1)).astype(np.uint8)
y = (rng.random((batch, 14)) > 0.8).astype(np.float32)
ds = tf.data.Dataset.from_tensors((x, y)).repeat()
times, ends = [], []
class T(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None):
        ends.append(time.perf_counter()); times.append(ends[-1] - self.t)
t0 = time.perf_counter()
model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[T()])
first_fit = time.perf_counter() - t0
first = ends[0] - t0   # fit() called -> the first step's logs are ready
times.clear()
model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[T()])
print(json.dumps({"first_step_s": first, "first_fit_call_s": first_fit, "steady_step_s": float(np.median(times)),
                  "steady_images_per_s": batch / float(np.median(times))}))
'''


TORCH = r'''
import json, os, sys, time
import numpy as np, torch, torchvision
size, batch, steps, bf16 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "bf16"
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count())
model = torchvision.models.densenet121(weights=None, num_classes=14)
opt = torch.optim.Adam(model.parameters(), 1e-3)
loss_fn = torch.nn.BCEWithLogitsLoss()
x = torch.rand(batch, 3, size, size)
y = (torch.rand(batch, 14) > 0.8).float()
def step():
    opt.zero_grad()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss = loss_fn(model(x).float(), y)
    loss.backward()
    opt.step()
t0 = time.perf_counter(); step(); first = time.perf_counter() - t0
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"first_step_s": first, "steady_step_s": float(np.median(times)),
                  "steady_images_per_s": batch / float(np.median(times)), "torch": torch.__version__}))
'''


KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                "amx_int8", "avx_vnni")


def cpu_info() -> dict:
    """The CPU model, its logical CPUs and which of the flags that decide oneDNN's kernels
    (AVX2/AVX-512, VNNI, BF16, AMX) it reports (Linux ``/proc/cpuinfo``; elsewhere the platform's
    processor string and no flags)."""
    import os
    import platform
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cpus": os.cpu_count(), "flags": [f for f in KERNEL_FLAGS if f in flags],
            "missing": [f for f in KERNEL_FLAGS if flags and f not in flags]}


def _torch_available() -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))


def _run(variant: str, args) -> dict:
    """One variant in a fresh process: its first-step and steady-state figures."""
    t = time.perf_counter()
    if variant.startswith("torch"):
        code, extra = TORCH, ["bf16" if variant.endswith("_bf16") else "fp32"]
        argv = [str(args.size), str(args.batch), str(args.steps), *extra]
    else:
        argv = [variant, str(args.size), str(args.batch), str(args.steps)]
        code = VARIANT
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    _line(variant, res)
    return res


def _line(variant: str, res: dict) -> None:
    fit_call = f"   (first fit() call {res['first_fit_call_s']:5.1f} s)" if res.get("first_fit_call_s") else ""
    print(f"{variant:12s} first step {res['first_step_s']:7.1f} s   steady {res['steady_images_per_s']:6.2f} img/s"
          + fit_call, flush=True)


def main(argv=None) -> dict:
    """Run the variants (the compared pairs ``--repeats`` times, interleaved) and print the
    comparison: each variant's median figures and its median per-round ratios."""
    import statistics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the torch/cxr_tf pairs (default 3)")
    ap.add_argument("--variants", default="keras_xla,keras_plain,cxr_tf,torch",
                    help="comma-separated; also cxr_tf_bf16 and torch_bf16")
    args = ap.parse_args(argv)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cpus']} logical CPUs; kernel flags: {' '.join(cpu['flags']) or 'none'}"
          + (f"; without: {' '.join(cpu['missing'])}" if cpu["missing"] else ""))
    variants = args.variants.split(",")
    if not _torch_available():
        print("torch        skipped (torch and torchvision are not importable)")
        variants = [v for v in variants if not v.startswith("torch")]
    paired = [v for v in variants if v.startswith(("torch", "cxr_tf"))]
    runs = {v: [] for v in variants}
    for v in variants:
        if v not in paired:
            runs[v].append(_run(v, args))
    for _ in range(max(1, args.repeats)):   # interleaved rounds: each round's pair ran back to back
        for v in paired:
            runs[v].append(_run(v, args))
    res = {"cpu": cpu, "runs": runs, "median": {}, "ratios": {}}
    for v, rs in runs.items():
        res["median"][v] = {k: statistics.median(r[k] for r in rs) for k in rs[0]
                            if k in ("first_step_s", "first_fit_call_s", "steady_images_per_s")}
    print(f"medians over {max(1, args.repeats)} round(s) of {', '.join(paired)}; one run of the others")
    for v, m in res["median"].items():
        _line(v, m)
    for ref in ("keras_xla", "torch", "torch_bf16"):
        if ref not in runs:
            continue
        for v, rs in runs.items():
            if ref.endswith("_bf16") != v.endswith("_bf16") and v != ref:
                continue
            base = runs[ref]
            # per round when both ran in every round, else against the reference's median
            pairs = list(zip(rs, base)) if len(rs) == len(base) else [(r, res["median"][ref]) for r in rs]
            first = statistics.median(r["first_step_s"] / b["first_step_s"] for r, b in pairs)
            steady = statistics.median(r["steady_images_per_s"] / b["steady_images_per_s"] for r, b in pairs)
            res["ratios"][f"{v}/{ref}"] = {"first_step": first, "steady_speed": steady}
            print(f"{v:12s} first-step ratio vs {ref:10s} {first:6.2f}   steady-speed ratio {steady:.2f}")
    return res


if __name__ == "__main__":
    main()
