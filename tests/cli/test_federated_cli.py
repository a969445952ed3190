"""`cxr-tf federated` and `cxr-tf federated-app` on bad input: one clear line, nothing trained."""

import json

import pandas as pd
import pytest

pytest.importorskip("flwr")

from click.testing import CliRunner  # noqa: E402

from cxr_tf.cli import main  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_federated_needs_records(tmp_path):
    r = _run("federated", "--out", str(tmp_path / "fed"))
    assert r.exit_code == 2 and "records" in r.output and "Traceback" not in r.output


def test_a_bad_site_split_file_is_named(records_dir, tmp_path):
    bad = tmp_path / "sites.csv"
    pd.DataFrame({"patient": ["nobody"], "hospital": ["a"]}).to_csv(bad, index=False)
    r = _run("federated", "--records", str(records_dir), "--site-split", str(bad), "--out", str(tmp_path / "fed"))
    assert r.exit_code == 2 and str(bad) in r.output and "'site' column" in r.output


def test_fedavg_refuses_mu_and_fedprox_gets_a_default(tmp_path):
    r = _run("federated-app", str(tmp_path / "app"), "--sites", "2", "--out", "/srv/run", "--mu", "0.1")
    assert r.exit_code == 2 and "FedProx" in r.output
    r = _run("federated-app", str(tmp_path / "app"), "--sites", "3", "--out", "/srv/run", "--strategy", "fedprox",
             "--rounds", "7", "--set", "lr=1e-4")
    assert r.exit_code == 0, r.output
    config = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    app = config["tool"]["flwr"]["app"]
    assert config["project"]["dependencies"] == []                    # nothing installed per run
    assert app["components"] == {"serverapp": "cxr_tf_app:server", "clientapp": "cxr_tf_app:client"}
    plan = json.loads(app["config"]["plan"])
    assert (app["config"]["sites"], plan["strategy"], plan["mu"], plan["rounds"], plan["train"]) == (
        3, "fedprox", 0.01, 7, {"lr": 1e-4})
    r = _run("federated-app", str(tmp_path / "app2"), "--sites", "2", "--out", "/srv/run", "--set", "records=/x")
    assert r.exit_code == 2 and "belong to a site" in r.output
