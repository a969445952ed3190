"""A real deployment on loopback: one flower-superlink, two flower-supernodes each naming its own
records, `flwr run` of the app `cxr-tf federated-app` writes, one round; then everything is
stopped and no process is left."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("flwr")

from click.testing import CliRunner  # noqa: E402

import cxr_tf  # noqa: E402
from cxr_tf.cli import main  # noqa: E402
from cxr_tf.federated.deploy import connection_config  # noqa: E402
from cxr_tf.records.partition import assign_sites, write_sites  # noqa: E402
from cxr_tf.records.reader import RecordsDir  # noqa: E402

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> set:
    """pid and all its descendants (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += parents.get(p, [])
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_superlink_and_two_supernodes_on_loopback(records_dir, tmp_path):
    superlink, supernode, flwr = _tool("flower-superlink"), _tool("flower-supernode"), _tool("flwr")
    rec = RecordsDir(records_dir)
    sites = write_sites(records_dir, assign_sites(rec.manifest, rec.findings, 2, seed=0), tmp_path / "sites")
    app, coord = tmp_path / "app", tmp_path / "coordinator"
    r = CliRunner().invoke(main, ["federated-app", str(app), "--sites", "2", "--out", str(coord), "--rounds", "1",
                                  "--val-records", str(records_dir), "--set", "preset=tiny", "--set", "weights=none",
                                  "--set", "image_size=32", "--set", "batch_size=8", "--set", "verbose=0",
                                  "--set", "strategy=default"])
    assert r.exit_code == 0, r.output
    home = tmp_path / "flwr_home"
    home.mkdir()
    port = _free_port()
    (home / "config.toml").write_text(connection_config("loopback", f"127.0.0.1:{port}"))
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    # the Flower tools may belong to another interpreter (a venv over system site-packages):
    # their app processes import the cxr_tf under test, not whatever that interpreter has
    src = str(Path(cxr_tf.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, *args):
        fh = open(logs / f"{name}.log", "wb")
        procs.append(subprocess.Popen(list(args), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=tmp_path))
    try:
        start("superlink", superlink, "--insecure", "--host", "127.0.0.1", "--port", str(port),
              "--disable-runtime-dependency-installation", "--database", str(tmp_path / "state.db"))
        time.sleep(3)
        for i, (name, path) in enumerate(sites.items()):
            start(f"supernode{i}", supernode, "--insecure", "--superlink", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                  "--port", str(_free_port()), "--node-config", f"records='{path}' site='hospital{i}'")
        time.sleep(3)
        run = subprocess.run([flwr, "run", str(app), "loopback", "--stream"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        deadline = time.time() + 120
        while not (coord / "model.keras").is_file() and time.time() < deadline:
            time.sleep(1)
        assert (coord / "model.keras").is_file(), ("the ServerApp wrote no model; flwr run printed:\n"
                                                   + run.stdout[-4000:] + run.stderr[-2000:])
        rounds = pd.read_csv(coord / "rounds.csv")
        assert list(rounds["round"]) == [0, 1]
        assert 0 <= rounds["val_auroc_mean"].iloc[1] <= 1 and "sites_train_loss" in rounds
        assert (coord / "model.keras").is_file()
        tree = set().union(*(_tree(p.pid) for p in procs))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid in tree) and time.time() < deadline:
        time.sleep(0.5)
    left = [pid for pid in tree if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
