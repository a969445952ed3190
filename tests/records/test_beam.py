"""``prepare --runner beam`` (the DirectRunner, two worker processes): the pool's manifest, examples
per split and summary; the same skip reporting; a killed job leaves nothing ``train`` trusts and a
rerun succeeds; ``train`` and ``evaluate`` accept the result."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from cxr_tf.core.errors import CxrDataError, CxrImageError
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import RecordsDir, load_summary
from cxr_tf.records.tfrecord import example_features, feature_bytes, read_records

pytest.importorskip("apache_beam")

ARGS = dict(size=48, images_per_shard=16, workers=2)        # as the session's records_dir (the pool)


def _examples(records_dir) -> dict:
    """split -> {image_id: serialized example}, read back from the shards."""
    out = {}
    for shard in sorted(records_dir.glob("*.tfrecord")):
        split = shard.name.split("-")[0]
        for rec in read_records(shard):
            image_id = feature_bytes(example_features(rec)["image_id"])[0].decode()
            out.setdefault(split, {})[image_id] = rec
    return out


def _without_volatile(summary: dict) -> dict:
    s = json.loads(json.dumps(summary))
    s.pop("created")
    s["config"].pop("runner")
    return s


@pytest.fixture(scope="module")
def beam_records(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("beam_records")
    prepare("chestxray14", phantom_dir, out, runner="beam", **ARGS)
    return out


def test_beam_matches_the_pool(beam_records, records_dir):
    pool, beam = pd.read_csv(records_dir / "manifest.csv"), pd.read_csv(beam_records / "manifest.csv")
    pd.testing.assert_frame_equal(beam, pool)
    assert (beam_records / "manifest.csv").read_bytes() == (records_dir / "manifest.csv").read_bytes()
    got, want = _examples(beam_records), _examples(records_dir)
    assert set(got) == set(want) == {"train", "val", "test"}
    for split in want:
        assert set(got[split]) == set(want[split]) == set(pool.loc[pool["split"] == split, "image_id"])
        assert got[split] == want[split]            # every example byte-equal, wherever its shard boundary
    s_beam, s_pool = load_summary(beam_records), load_summary(records_dir)
    assert s_beam["config"]["runner"] == "beam" and s_pool["config"]["runner"] == "pool"
    assert _without_volatile(s_beam) == _without_volatile(s_pool)
    for name in ("boxes.csv", "skipped.csv"):
        assert (beam_records / name).read_bytes() == (records_dir / name).read_bytes()
    assert not list(beam_records.glob(".beam-tmp-*")) and not list(beam_records.glob("*partial*"))


def test_bad_images_error_or_counted_skip_like_the_pool(damaged_phantom, tmp_path):
    data, victim, empty = damaged_phantom
    with pytest.raises(CxrImageError) as err:
        prepare("chestxray14", data, tmp_path / "beam", runner="beam", **ARGS)
    assert victim.name in str(err.value) or empty.name in str(err.value)
    assert not (tmp_path / "beam" / "summary.json").exists() and not list((tmp_path / "beam").glob("*.tfrecord"))
    assert not list((tmp_path / "beam").glob(".beam-tmp-*"))
    s = prepare("chestxray14", data, tmp_path / "beam", runner="beam", allow_missing=True, **ARGS)
    p = prepare("chestxray14", data, tmp_path / "pool", runner="pool", allow_missing=True, **ARGS)
    assert s["counts"]["unreadable_images"] == 2 and s["counts"]["written_images"] == 94
    assert s["unreadable"] == p["unreadable"] and s["counts"] == p["counts"]
    for name in ("manifest.csv", "skipped.csv"):
        assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "pool" / name).read_bytes()
    assert _examples(tmp_path / "beam") == _examples(tmp_path / "pool")
    # a skipped image has no record: the manifest's shard_index points at each image's own record
    man = pd.read_csv(tmp_path / "beam" / "manifest.csv")
    for shard, part in man.groupby("shard"):
        ids = [feature_bytes(example_features(r)["image_id"])[0].decode()
               for r in read_records(tmp_path / "beam" / shard)]
        assert [ids[i] for i in part["shard_index"]] == part["image_id"].tolist()


def _cli(*args) -> list[str]:
    return [sys.executable, "-c", "from cxr_tf.cli import main; main()", *map(str, args)]


def _session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (the killed job's, its Beam workers included)."""
    from pathlib import Path
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_killed_job_is_refused_and_a_rerun_succeeds(phantom_dir, records_dir, tmp_path):
    out = tmp_path / "rec"
    shutil.copytree(records_dir, out)                 # a completed directory, as an earlier run left it
    RecordsDir(out)
    env = {**os.environ, "CXR_TF_PROGRESS": "0"}
    proc = subprocess.Popen(_cli("prepare", "chestxray14", "--data-dir", phantom_dir, "--out", out, "--size", 48,
                                 "--images-per-shard", 4, "--workers", 2, "--runner", "beam"),
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".beam-tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)                               # the pipeline is running
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)           # the job and its Beam worker processes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session(proc.pid) == [], "Beam worker processes outlived the job"
    assert list(out.glob(".beam-tmp-*")) and not (out / "summary.json").exists()
    with pytest.raises(CxrDataError, match="not a completed records directory"):
        RecordsDir(out)
    res = subprocess.run(_cli("train", "--records", out, "--out", tmp_path / "run", "--preset", "tiny"),
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "not a completed records directory" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    prepare("chestxray14", phantom_dir, out, runner="beam", **ARGS)          # the rerun
    assert not list(out.glob(".beam-tmp-*")) and not list(out.glob("*partial*"))
    assert (out / "manifest.csv").read_bytes() == (records_dir / "manifest.csv").read_bytes()
    assert _examples(out) == _examples(records_dir)


def test_train_and_evaluate_accept_beam_records(beam_records, tiny_config, tmp_path):
    pytest.importorskip("tensorflow")
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.pipeline import make_dataset
    from cxr_tf.training.train import train

    batches = list(make_dataset(beam_records, "train", batch_size=8, image_size=48, training=False))
    assert sum(int(x.shape[0]) for x, *_ in batches) == load_summary(beam_records)["splits"]["train"]["images"]
    run = tmp_path / "run"
    train(tiny_config(beam_records, run, epochs=1))
    metrics = evaluate(run, "test", n_boot=10, figures=False)
    assert (run / "model.keras").is_file() and metrics
