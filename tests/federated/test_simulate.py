"""A real simulated federation (Flower + ray) on phantom sites: every message that crosses
between a site and the coordinator is recorded as its wire bytes and inspected, FedAvg's result
is checked against the sites' own replies, and no process is left behind."""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

from cxr_tf.federated.client import ALLOWED_METRICS, weight_names  # noqa: E402
from cxr_tf.federated.plan import Plan  # noqa: E402
from cxr_tf.federated.simulate import _reap, build_sites, run_simulation, simulate  # noqa: E402
from cxr_tf.records.reader import RecordsDir  # noqa: E402
from cxr_tf.records.tfrecord import read_records  # noqa: E402

TRAIN = {"preset": "tiny", "weights": "none", "image_size": 32, "batch_size": 8, "verbose": 0,
         "strategy": "default", "hflip": False}


def _recorder(folder: str):
    """A client mod (it runs in the ray workers) writing each message in and out as wire bytes,
    with a JSON description of its records."""
    def mod(msg, context, call_next):
        from flwr.common.serde import message_to_proto

        reply = call_next(msg, context)
        for direction, m in (("in", msg), ("out", reply)):
            stem = Path(folder) / f"{os.getpid()}_{msg.metadata.message_id[:12]}_{direction}"
            stem.with_suffix(".bin").write_bytes(message_to_proto(m).SerializeToString())
            c = m.content
            desc = {"type": msg.metadata.message_type, "node": context.node_config.get("partition-id"),
                    "records": sorted(c.keys()),
                    "arrays": {k: [list(a.shape), a.dtype] for r in c.array_records.values() for k, a in r.items()},
                    "metrics": {k: v for r in c.metric_records.values() for k, v in r.items()},
                    "config": {k: v for r in c.config_records.values() for k, v in r.items()}}
            stem.with_suffix(".json").write_text(json.dumps(desc))
            if direction == "out" and "arrays" in c:
                np.savez(stem.with_suffix(".npz"), **{k.replace("/", "|"): a.numpy() for k, a in c["arrays"].items()})
        return reply
    return mod


def _live_children() -> set:
    """Processes whose parent is this one (ray's raylet and GCS hang off the driver), zombies aside."""
    out = set()
    for proc in psutil.Process().children():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _cmdlines(pids) -> dict:
    """pid -> command line and state, for a failure message."""
    out = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out[pid] = f"{' '.join(proc.cmdline())[:300]} | {proc.status()}"
        except psutil.Error:
            out[pid] = "?"
    return out


def _secrets(site_records: list[str]) -> dict:
    """What must never leave a site: identifiers, image bytes and label arrays."""
    strings, chunks, labels = set(), [], []
    for path in site_records:
        rec = RecordsDir(path)
        m = rec.manifest
        strings |= set(m["image_id"]) | {p for p in m["patient"] if len(str(p)) >= 4} | set(m["path"]) | {path}
        for raw in list(read_records(rec.path / m["shard"].iat[0]))[:4]:
            png = raw.find(b"\x89PNG")
            assert png >= 0
            chunks.append(raw[png + 40:png + 104])       # 64 bytes of compressed pixels
        y = m[rec.findings].to_numpy(np.float32)
        labels += [y.tobytes()[:56 * 4], y.T.copy().tobytes()[:56 * 4]]
    return {"strings": strings, "chunks": chunks, "labels": labels}


def test_reap_waits_for_exiting_processes_and_kills_stragglers(caplog):
    """ray.shutdown signals its processes without waiting: one that exits on its own is waited
    for and reaped, one that ignores SIGTERM is killed after the timeout and named."""
    quits = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                                 "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
    assert stubborn.stdout.readline().strip() == b"ready"
    stubborn.terminate()                              # what ray.shutdown does
    procs = [psutil.Process(quits.pid), psutil.Process(stubborn.pid)]
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cxr_tf.federated.simulate"):
        _reap(procs, timeout=3.0)
    assert 3.0 <= time.monotonic() - t0 < 20
    assert procs[0].returncode == 0                   # exited by itself, reaped
    assert procs[1].returncode == -9                  # killed
    assert _live_children() & {quits.pid, stubborn.pid} == set()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and f"process {stubborn.pid}" in warned[0]
    stubborn.stdout.close()


@pytest.mark.slow
def test_every_message_carries_only_weights_and_scalars(records_dir, tmp_path):
    sites, evaluation = build_sites(tmp_path, records=records_dir, sites=2, seed=0)
    plan = Plan(train=TRAIN, sites=sites, evaluation=evaluation, rounds=1, out=str(tmp_path / "federated"))
    msgs = tmp_path / "messages"
    msgs.mkdir()
    before = _live_children()
    run_simulation(plan, client_mods=[_recorder(str(msgs))])
    left = _cmdlines(_live_children() - before)
    ray_left = {pid: cmd for pid, cmd in left.items() if "ray" in cmd}
    assert not ray_left, f"ray processes outlived the simulation: {ray_left}"
    # Flower's exit event, built on a thread of its own as run_simulation returns (and never sent:
    # telemetry is off), runs a short helper: platform.architecture() calls `file -b python`
    deadline = time.monotonic() + 30
    while (extra := _live_children() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not extra, f"processes outlived the simulation: {_cmdlines(extra)}"

    descs = {p.stem: json.loads(p.read_text()) for p in msgs.glob("*.json")}
    out = {k: d for k, d in descs.items() if k.endswith("_out")}
    assert sorted(d["type"] for d in out.values()) == ["evaluate", "evaluate", "train", "train"]
    assert {d["node"] for d in out.values()} == {0, 1}

    from cxr_tf.models import load_model
    model = load_model(tmp_path / "federated" / "model.keras")
    names = weight_names(model)
    for d in out.values():
        kind = d["type"]
        assert d["config"] == {}
        assert set(d["metrics"]) <= ALLOWED_METRICS[kind] and "num-examples" in d["metrics"]
        assert all(isinstance(v, (int, float)) for v in d["metrics"].values())
        if kind == "train":
            assert d["records"] == ["arrays", "metrics"]
            assert list(d["arrays"]) == names
            assert {dt for _, dt in d["arrays"].values()} == {"float32"}
        else:
            assert d["records"] == ["metrics"]
    for d in (d for k, d in descs.items() if k.endswith("_in")):      # what the coordinator sends
        assert set(d["records"]) == {"arrays", "config"} and list(d["arrays"]) == names
        assert set(d["config"]) <= {"server-round", "local-epochs", "proximal-mu"}

    wire = b"".join(p.read_bytes() for p in msgs.glob("*.bin"))
    secrets = _secrets([s.records for s in sites])
    assert b"\x89PNG" not in wire
    for s in secrets["strings"]:
        assert str(s).encode() not in wire, f"identifier {s!r} left a site"
    for chunk in secrets["chunks"]:
        assert chunk not in wire, "image bytes left a site"
    for y in secrets["labels"]:
        assert y not in wire, "a label array left a site"

    # FedAvg: the global model is the num-examples-weighted mean of what the sites sent
    replies = [(np.load(p), out[p.stem]["metrics"]["num-examples"]) for p in msgs.glob("*_out.npz")]
    total = sum(n for _, n in replies)
    for v, name in zip(model.weights, names):
        expected = sum(n * r[name.replace("/", "|")].astype("float64") for r, n in replies) / total
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6)
    sizes = {int(d["node"]): d["metrics"]["num-examples"] for d in out.values() if d["type"] == "train"}
    assert sizes == {i: RecordsDir(s.records).splits["train"]["images"] for i, s in enumerate(sites)}

    rounds = pd.read_csv(tmp_path / "federated" / "rounds.csv")
    assert list(rounds["round"]) == [0, 1]
    assert rounds["val_auroc_mean"].between(0, 1).all() and np.isfinite(rounds["sites_val_loss"].iloc[1])
    assert any((tmp_path / "federated" / "logs" / "federated").iterdir())


@pytest.mark.slow
def test_simulate_writes_the_comparison(records_dir, tmp_path):
    res = simulate(tmp_path, records=records_dir, sites=2, skew="label", alpha=1.0, rounds=2,
                   strategy="fedprox", mu=0.01, train=TRAIN)
    assert set(res) >= {"federated", "centralized", "sites"}
    for part in ("federated", "centralized"):
        assert 0 <= res[part]["val_auroc_mean"] <= 1 and set(res[part]["test_auroc_mean"]) == {"pooled"}
    central = pd.read_csv(tmp_path / "centralized" / "epochs.csv")
    assert list(central["epoch"]) == [1, 2]          # rounds x local epochs
    assert json.loads((tmp_path / "federated" / "plan.json").read_text())["strategy"] == "fedprox"
    report = (tmp_path / "report.md").read_text()
    assert "| federated |" in report and "| centralized, same epochs |" in report


def test_shared_findings_through_the_crosswalk(records_dir, chexpert_records):
    (nih, nih_names), (chexpert, chexpert_names) = _shared(records_dir, chexpert_records)
    assert (nih, chexpert) == ("chestxray14", "chexpert")
    pairs = dict(zip(nih_names, chexpert_names))
    assert pairs["Effusion"] == "Pleural Effusion" and pairs["Cardiomegaly"] == "Cardiomegaly"
    assert "Infiltration" not in pairs and "No Finding" not in chexpert_names   # approximate / not mapped
    assert len(pairs) == 7


def _shared(*dirs):
    from cxr_tf.federated.simulate import shared_findings
    return shared_findings(list(dirs))


@pytest.mark.slow
def test_a_site_per_dataset_trains_on_the_shared_findings(records_dir, chexpert_records, tmp_path):
    res = simulate(tmp_path, site_records=[records_dir, chexpert_records], rounds=1,
                   train={**TRAIN, "loss": "masked_bce"})
    assert [s["name"] for s in res["sites"]] == ["chestxray140", "chexpert1"]
    assert "centralized" not in res                          # no pooled records to train on
    assert set(res["federated"]["test_auroc_mean"]) == {"chestxray140", "chexpert1"}
    rounds = pd.read_csv(tmp_path / "federated" / "rounds.csv")
    assert {"val_auroc_mean_chestxray140", "val_auroc_mean_chexpert1"} <= set(rounds.columns)
    from cxr_tf.models import findings_of, load_model
    assert len(findings_of(load_model(tmp_path / "federated" / "model.keras"))) == 7
