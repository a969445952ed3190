"""A real deployment: the Flower App directory that ``flwr run`` sends to a ``flower-superlink``,
and the commands that start the coordinator and the hospitals (see the README, "Federated
training").

The app holds no code of its own: ``cxr_tf_app.py`` builds the ClientApp and ServerApp from the
installed cxr_tf, and ``pyproject.toml`` lists no dependency, so the SuperLink never installs
anything (start it with ``--disable-runtime-dependency-installation`` too). The run config
carries the plan (shared settings, rounds, strategy, the coordinator's own evaluation records
and output folder); each hospital's SuperNode names its records with ``--node-config``.
"""

from __future__ import annotations

from pathlib import Path

from cxr_tf.core import atomic
from cxr_tf.federated.plan import Plan

APP_MODULE = '''"""cxr-tf's Flower App: the ClientApp and ServerApp of cxr_tf.federated (installed at every
site; this file only names them)."""

from cxr_tf.federated.client import make_client_app
from cxr_tf.federated.server import make_server_app

client = make_client_app()
server = make_server_app()
'''


def _toml_string(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_app(out_dir, plan: Plan, sites: int) -> Path:
    """Write the Flower App directory for ``plan`` over ``sites`` hospitals; returns it."""
    if plan.sites:
        raise ValueError("a deployed plan names no site records: each SuperNode names its own")
    out = Path(out_dir)
    pyproject = "\n".join([
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "cxr-tf-federated"', 'version = "1.0.0"',
        'description = "cxr-tf federated training (ClientApp and ServerApp from the installed cxr_tf)"',
        'license = "Apache-2.0"',
        "# Empty on purpose: cxr-tf and flwr are installed at every site; nothing is installed per run.",
        "dependencies = []", "",
        "[tool.hatch.build.targets.wheel]", 'packages = ["."]', "",
        "[tool.flwr.app]", 'publisher = "cxr-tf"', "",
        "[tool.flwr.app.components]", 'serverapp = "cxr_tf_app:server"', 'clientapp = "cxr_tf_app:client"', "",
        "[tool.flwr.app.config]", f"sites = {int(sites)}", f"plan = {_toml_string(plan.to_json())}", ""])
    atomic.write_text(out / "pyproject.toml", pyproject)
    atomic.write_text(out / "cxr_tf_app.py", APP_MODULE)
    return out


def connection_config(name: str, address: str, root_certificates: str | None = None) -> str:
    """The ``$FLWR_HOME/config.toml`` that lets ``flwr run APP NAME`` reach a SuperLink's
    Control API at ``address``: TLS with ``root_certificates``, else insecure (loopback only)."""
    lines = ["[superlink]", f"default = {_toml_string(name)}", "", f"[superlink.{name}]",
             f"address = {_toml_string(address)}"]
    lines.append(f"root-certificates = {_toml_string(str(root_certificates))}" if root_certificates
                 else "insecure = true")
    return "\n".join(lines) + "\n"
