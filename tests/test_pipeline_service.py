"""The tf.data service on loopback, really run: `cxr-tf data-service dispatcher` and two
`cxr-tf data-service worker` processes on 127.0.0.1; the training pipeline through them yields
every training image exactly once per epoch, and as many batches as the in-process pipeline; no
process is left over."""

import collections
import os
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from cxr_tf.pipeline import make_dataset

CLI = "from cxr_tf.cli import main; main()"


def _start(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CXR_TF_PROGRESS": "0"}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, "-c", CLI, "data-service", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(proc, text, timeout=120):
    """Read ``proc``'s output until a line holds ``text``."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} from {proc.args[3:]}: {''.join(seen)[-3000:]}")


def _ids(ds):
    return [i for batch in ds for i in batch[2]["image_id"].numpy().tolist()]


@pytest.mark.slow
def test_one_dispatcher_two_workers_each_image_once_per_epoch(records_dir, tiny_config, tmp_path, free_ports):
    d_port, *w_ports = free_ports(3)
    procs = []
    try:
        procs.append(_start("dispatcher", "--port", d_port))
        _wait_for(procs[0], "dispatcher at")
        for port in w_ports:
            procs.append(_start("worker", "--dispatcher", f"127.0.0.1:{d_port}", "--port", port))
        for p in procs[1:]:
            _wait_for(p, "worker on port")
        address = f"127.0.0.1:{d_port}"
        kw = dict(batch_size=8, image_size=32, seed=0, training=True)
        served = make_dataset(records_dir, "train", include_meta=True, data_service=address, **kw)
        local = make_dataset(records_dir, "train", include_meta=True, **kw)
        want = sorted(_ids(local))
        assert len(want) == len(set(want)) == 69
        for epoch in range(2):                       # each iteration is a new distributed epoch
            got = _ids(served)
            counts = collections.Counter(got)
            assert sorted(got) == want, (epoch, [k for k, n in counts.items() if n != 1])
        # what `cxr-tf train --data-service` trains on: the same number of (full) batches
        train_kw = dict(kw, drop_remainder=True)
        n_served = sum(1 for _ in make_dataset(records_dir, "train", data_service=address, **train_kw))
        n_local = sum(1 for _ in make_dataset(records_dir, "train", **train_kw))
        assert n_served == n_local == 69 // 8
        x, y = next(iter(make_dataset(records_dir, "train", data_service=address, **train_kw)))
        assert x.shape == (8, 32, 32, 1) and x.dtype == tf.uint8 and y.shape == (8, 14)
        # and a real training run through it: one epoch of 69 // 8 steps
        import keras

        from cxr_tf.training.train import train

        class Steps(keras.callbacks.Callback):
            n = 0

            def on_train_batch_end(self, batch, logs=None):
                Steps.n += 1
        state = train(tiny_config(records_dir, tmp_path / "run", epochs=1, tb_cam_images=0, data_service=address),
                      callbacks=[Steps()])
        assert state["epoch"] == 1 and Steps.n == 69 // 8
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=20)
            p.stdout.close()
    assert all(p.returncode is not None for p in procs)
    for p in procs:                                   # no process left over
        with pytest.raises(ProcessLookupError):
            os.kill(p.pid, 0)
