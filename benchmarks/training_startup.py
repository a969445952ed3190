"""Where the first Keras training step's time goes, and what cxr_tf's fast start saves.

One command: ``python benchmarks/training_startup.py [--size 224] [--batch 16] [--steps 6]``.
Each variant runs in a fresh process (graph settings are process-global) on DenseNet121 with
random weights and an in-memory batch, and reports the wall time of the first ``fit`` step
(tracing + graph optimization + first run) and the median of the following steps:

* ``keras_xla``: ``compile(jit_compile=True)``, XLA; the configuration that costs 90-130 s here;
* ``keras_plain``: ``compile(jit_compile=False)`` with ``keras.optimizers.Adam``;
* ``cxr_tf``: what ``cxr-tf train`` does: no XLA, optimizer built before tracing, the fused Adam
  kernel (one op per variable instead of ~20), and Grappler's meta-optimizer off on CPU;
* ``torch``: torchvision's DenseNet121 with ``torch.optim.Adam`` on the same batch shape, when
  torch and torchvision are importable (eager PyTorch: no tracing, so its first step is the
  reference for what a first step can cost).

The Keras variants feed the model what the cxr_tf pipeline ships: uint8 grayscale
[B, H, W, 1]; the model casts, expands to RGB and normalizes in its first layers. Ratios are
against ``keras_xla`` and against ``torch``, measured in the same run.
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
if variant == "cxr_tf":
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
from cxr_tf.models import build_model
from cxr_tf.models.optimizers import FusedAdam
keras.utils.set_random_seed(0)
model = build_model("chexnet", weights=None, image_size=size)
opt = FusedAdam(1e-3) if variant == "cxr_tf" else keras.optimizers.Adam(1e-3)
model.compile(opt, "binary_crossentropy", jit_compile=(variant == "keras_xla"))
if variant == "cxr_tf":
    model.optimizer.build(model.trainable_variables)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (batch, size, size, 1)).astype(np.uint8)
y = (rng.random((batch, 14)) > 0.8).astype(np.float32)
ds = tf.data.Dataset.from_tensors((x, y)).repeat()
times = []
class T(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): times.append(time.perf_counter() - self.t)
t0 = time.perf_counter()
model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
first = time.perf_counter() - t0
model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[T()])
print(json.dumps({"first_step_s": first, "steady_step_s": float(np.median(times)),
                  "steady_images_per_s": batch / float(np.median(times))}))
'''


TORCH = r'''
import json, os, sys, time
import numpy as np, torch, torchvision
size, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count())
model = torchvision.models.densenet121(weights=None, num_classes=14)
opt = torch.optim.Adam(model.parameters(), 1e-3)
loss_fn = torch.nn.BCEWithLogitsLoss()
x = torch.rand(batch, 3, size, size)
y = (torch.rand(batch, 14) > 0.8).float()
def step():
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()
t0 = time.perf_counter(); step(); first = time.perf_counter() - t0
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"first_step_s": first, "steady_step_s": float(np.median(times)),
                  "steady_images_per_s": batch / float(np.median(times)), "torch": torch.__version__}))
'''


def _torch_available() -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))


def main(argv=None) -> dict:
    """Run the three variants and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--variants", default="keras_xla,keras_plain,cxr_tf,torch")
    args = ap.parse_args(argv)
    res = {}
    for v in args.variants.split(","):
        if v == "torch" and not _torch_available():
            print("torch        skipped (torch and torchvision are not importable)")
            continue
        t = time.perf_counter()
        code, extra = (TORCH, []) if v == "torch" else (VARIANT, [v])
        out = subprocess.run([sys.executable, "-c", code, *extra, str(args.size), str(args.batch), str(args.steps)],
                             capture_output=True, text=True, check=True)
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
        res[v]["process_s"] = time.perf_counter() - t
        print(f"{v:12s} first step {res[v]['first_step_s']:7.1f} s   steady {res[v]['steady_images_per_s']:6.2f} img/s",
              flush=True)
    for ref in ("keras_xla", "torch"):
        if ref in res:
            base = res[ref]
            for v, r in res.items():
                print(f"{v:12s} first-step ratio vs {ref:9s} {r['first_step_s'] / base['first_step_s']:6.2f}   "
                      f"steady-speed ratio {r['steady_images_per_s'] / base['steady_images_per_s']:.2f}")
    return res


if __name__ == "__main__":
    main()
