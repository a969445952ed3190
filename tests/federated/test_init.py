"""Importing cxr_tf.federated turns Flower's usage telemetry off, also when flwr was imported
first (flwr reads FLWR_TELEMETRY_ENABLED once, at import), and leaves a user's explicit choice."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("flwr")

PROBE = """
import json, sys
if sys.argv[1] == "flwr-first":
    import flwr.supercore.telemetry as t
import cxr_tf.federated
import flwr.supercore.telemetry as t
print(json.dumps({"flag": t.FLWR_TELEMETRY_ENABLED}))
if t.FLWR_TELEMETRY_ENABLED == "0":
    print(json.dumps({"event": t.create_event(t.EventType.PING, None)}))
"""


def _probe(order: str, tmp_path, **env) -> list[dict]:
    """Run the probe in a fresh interpreter; its JSON lines."""
    base = {k: v for k, v in os.environ.items() if k != "FLWR_TELEMETRY_ENABLED"}
    r = subprocess.run([sys.executable, "-c", PROBE, order], capture_output=True, text=True, timeout=120,
                       env={**base, "FLWR_HOME": str(tmp_path / "flwr"), **env})
    assert r.returncode == 0, r.stderr[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("order", ["cxr-first", "flwr-first"])
def test_telemetry_off_whatever_the_import_order(order, tmp_path):
    out = _probe(order, tmp_path)
    assert out == [{"flag": "0"}, {"event": "disabled"}]     # built locally, never posted


def test_an_explicit_choice_is_left_alone(tmp_path):
    assert _probe("flwr-first", tmp_path, FLWR_TELEMETRY_ENABLED="1") == [{"flag": "1"}]
