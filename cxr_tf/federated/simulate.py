"""``cxr-tf federated``: a whole federation simulated on this machine with Flower's simulation
engine (ray), beside centralized training on the same data for the same total epochs.

The sites are a partition of one records directory by patient (IID, or with a label or view
skew; or from a site-split file), or several records directories, one per dataset, trained on
the findings they share through the crosswalk. Output folder::

    OUT/sites/           one records directory per site, and sites.csv (images, patients)
    OUT/federated/       rounds.csv, logs/federated (TensorBoard), model.keras, plan.json
    OUT/centralized/     a cxr-tf run directory, and epochs.csv
    OUT/summary.json     final validation and test AUROC of both, the sites, the settings
    OUT/report.md

Ray is started for the simulation and shut down after it, also on failure, so no process is
left behind; telemetry is off (:mod:`cxr_tf.federated`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import psutil

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.federated.plan import Plan, Site

log = logging.getLogger(__name__)

DEMO = Path(__file__).with_name("demo.toml")     # what --demo runs (data, like every [demo] table)


def shared_findings(records_dirs) -> list[tuple[str, list[str]]]:
    """(dataset, its names of the shared findings) per records directory, in the first one's
    output order: the findings every dataset has by the crosswalk (same name or exact)."""
    from cxr_tf.vocab.crosswalk import pairs
    from cxr_tf.records.reader import RecordsDir

    recs = [RecordsDir(r) for r in records_dirs]
    outputs = list(recs[0].findings)
    names = [dict() for _ in recs]
    for out in outputs:
        names[0][out] = out
    for i, r in enumerate(recs[1:], 1):
        for p in pairs(outputs, r.findings):
            names[i][p.output] = p.finding
    shared = [o for o in outputs if all(o in n for n in names)]
    if not shared:
        raise CxrConfigError(f"the datasets {[r.dataset for r in recs]} share no finding", key="site_records")
    return [(r.dataset, [n[o] for o in shared]) for r, n in zip(recs, names)]


def build_sites(out: Path, *, records=None, site_records=None, sites: int = 3, site_split=None,
                skew: str = "none", alpha: float = 0.5, seed: int = 0) -> tuple[list[Site], list[Site]]:
    """(sites, evaluation sets): a partition of ``records`` written under ``out/sites``, or one
    site per directory of ``site_records``."""
    from cxr_tf.records.partition import assign_sites, read_site_split, write_sites
    from cxr_tf.records.reader import RecordsDir

    if site_records:
        if records or site_split:
            raise CxrConfigError("give either --site-records (a site per dataset) or --records", key="site_records")
        if len(site_records) < 2:
            raise CxrConfigError("a federation by dataset needs at least 2 records directories", key="site_records")
        named = shared_findings(site_records)
        found = [Site(name=f"{d}{i}", records=str(r), findings=f, dataset=d)
                 for i, (r, (d, f)) in enumerate(zip(site_records, named))]
        return found, found
    if records is None:
        raise CxrConfigError("is required (or --site-records, or --demo)", key="records")
    rec = RecordsDir(records)
    rec.require_splits("train", "val")
    frame = rec.manifest
    if site_split:
        assignment = read_site_split(site_split, frame)
    else:
        assignment = assign_sites(frame, rec.findings, sites, skew=skew, alpha=alpha, seed=seed)
    paths = write_sites(rec.path, assignment, out / "sites")
    found = [Site(name=str(name), records=str(path)) for name, path in paths.items()]
    return found, [Site(name="pooled", records=str(rec.path))]


def _backend_config() -> dict:
    """One ClientApp at a time, each with all cores (TensorFlow parallelizes inside a step), no
    dashboard, telemetry and TensorFlow logging off in the workers."""
    cpus = os.cpu_count() or 1
    # ray's workers inherit this process's environment (Flower sets ray's runtime_env itself)
    os.environ.update({"FLWR_TELEMETRY_ENABLED": "0", "CXR_TF_PROGRESS": "0",
                       "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    return {"client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
            "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False,
                          "object_store_memory": 256 * 1024 * 1024}}


def run_simulation(plan: Plan, client_mods: list | None = None) -> None:
    """Run the plan's federation with one simulated SuperNode per site, then shut ray down."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    from flwr.simulation import run_simulation as flower_run

    from cxr_tf.federated.client import make_client_app
    from cxr_tf.federated.server import make_server_app

    n = len(plan.sites)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        flower_run(server_app=make_server_app(plan, n), client_app=make_client_app(plan, mods=client_mods),
                   num_supernodes=n, backend_config=_backend_config())
    finally:
        import ray
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        if ray.is_initialized():
            ray.shutdown()
        _reap(started)


def _reap(procs: list, timeout: float = 30.0) -> None:
    """Wait for the processes the simulation started (ray's raylet, GCS, workers) to exit:
    ``ray.shutdown`` signals them without waiting. What outlives ``timeout`` seconds is killed
    and named in a warning, so no process stays behind the caller."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        log.warning("process %d (%s), started by the simulation, did not exit %.0f s after ray.shutdown; "
                    "killing it",
                    proc.pid, _name(proc), timeout)
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _name(proc) -> str:
    """A process's name, or '?' once it is gone."""
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _epoch_log(path: Path):
    """A Keras callback keeping each epoch's validation metrics in ``path`` (``epochs.csv``)."""
    import keras
    import pandas as pd

    class EpochLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()
                                                     if k in ("loss", "val_loss", "val_auroc_mean")}})
            atomic.write_csv(path, pd.DataFrame(self.rows))

    return EpochLog()


def centralized(plan: Plan, records, out: Path) -> dict:
    """Centralized training on the pooled ``records`` for rounds × local epochs, the same
    settings and a constant learning rate (as the sites train); returns its final metrics."""
    from cxr_tf.training.train import TrainConfig, train

    cfg = TrainConfig(**{**plan.train, "records": str(records), "out": str(out),
                         "epochs": plan.rounds * plan.local_epochs, "lr_schedule": "constant"})
    cb = _epoch_log(out / "epochs.csv")
    train(cfg, callbacks=[cb])
    return {"final": cb.rows[-1], "model": cb.model}


def test_scores(model, plan: Plan, sets: list[Site]) -> dict:
    """Mean test AUROC of ``model`` on each evaluation set that has a test split."""
    from cxr_tf.federated.server import scorer
    from cxr_tf.records.reader import RecordsDir
    from cxr_tf.training.session import Session

    out = {}
    for s in sets:
        cfg = plan.config(s)
        rec = RecordsDir(cfg.records)
        if "test" in rec.splits:
            loss = Session(cfg, rec, check=False).loss()
            out[s.name] = float(scorer(model, cfg, rec, "test", loss=loss)()["val_auroc_mean"])
    return out


def simulate(out, *, records=None, site_records=None, sites: int = 3, site_split=None, skew: str = "none",
             alpha: float = 0.5, strategy: str = "fedavg", mu: float = 0.0, rounds: int = 5, local_epochs: int = 1,
             train: dict | None = None, compare: bool = True, demo: bool = False) -> dict:
    """Simulate the federation into ``out`` (see the module doc) and return the summary."""
    import pandas as pd

    from cxr_tf.models import load_model

    out = Path(out)
    t0 = time.perf_counter()
    train = dict(train or {})
    if demo:
        from cxr_tf.core.settings import read_toml
        from cxr_tf.records.phantom import Demo
        demo_settings = Demo.of(read_toml(DEMO, "demo settings"), where=str(DEMO))
        records = demo_settings.records(out / "demo", "chestxray14")
        train = {**demo_settings.train, **train}
    train.setdefault("verbose", 0)
    found, evaluation = build_sites(out, records=records, site_records=site_records, sites=sites,
                                    site_split=site_split, skew=skew, alpha=alpha, seed=int(train.get("seed", 0)))
    plan = Plan(train=train, sites=found, evaluation=evaluation, rounds=rounds, local_epochs=local_epochs,
                strategy=strategy, mu=mu, out=str(out / "federated"))
    log.info("federation of %d sites, %s, %d round(s) x %d local epoch(s)", len(found), strategy, rounds,
             local_epochs)
    run_simulation(plan)
    fed_rounds = pd.read_csv(out / "federated" / "rounds.csv")
    fed_model = load_model(out / "federated" / "model.keras")
    summary = {
        "strategy": strategy, "mu": mu, "rounds": rounds, "local_epochs": local_epochs,
        "skew": skew if not (site_split or site_records) else ("file" if site_split else "by dataset"),
        "alpha": alpha, "sites": [{"name": s.name, **_site_counts(s)} for s in found],
        "federated": {"val_auroc_mean": _last(fed_rounds, "val_auroc_mean"),
                      "sites_val_auroc_mean": _last(fed_rounds, "sites_val_auroc_mean"),
                      "test_auroc_mean": test_scores(fed_model, plan, evaluation)},
    }
    if compare and records is not None:
        central = centralized(plan, records, out / "centralized")
        summary["centralized"] = {"val_auroc_mean": central["final"].get("val_auroc_mean"),
                                  "test_auroc_mean": test_scores(central["model"], plan, evaluation)}
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    atomic.write_json(out / "summary.json", summary)
    atomic.write_text(out / "report.md", render_report(summary))
    return summary


def _last(frame, column: str):
    return float(frame[column].iloc[-1]) if column in frame and len(frame) else None


def _site_counts(site: Site) -> dict:
    from cxr_tf.records.reader import RecordsDir
    rec = RecordsDir(site.records)
    train = rec.splits.get("train", {})
    positives = train.get("positives", {})
    top = sorted(positives, key=lambda f: -positives[f])[:3]
    return {"train_images": int(train.get("images", 0)), "val_images": int(rec.splits.get("val", {}).get("images", 0)),
            "patients": int(sum(s.get("patients", 0) for s in rec.splits.values())),
            "top_findings": {f: int(positives[f]) for f in top}}


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items()) or "—"
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def render_report(summary: dict) -> str:
    """``report.md``: federated beside centralized, and the sites."""
    lines = [f"# Federated training: {summary['strategy']}"
             + (f" (mu {summary['mu']})" if summary["strategy"] == "fedprox" else ""), "",
             f"{len(summary['sites'])} sites, skew {summary['skew']}"
             + (f" (alpha {summary['alpha']})" if summary["skew"] in ("label", "view") else "")
             + f"; {summary['rounds']} round(s) x {summary['local_epochs']} local epoch(s); "
             f"{summary['seconds']} s.", "",
             "| | val AUROC (mean) | test AUROC (mean) |", "|---|---|---|",
             f"| federated | {_fmt(summary['federated']['val_auroc_mean'])} | "
             f"{_fmt(summary['federated']['test_auroc_mean'])} |"]
    if "centralized" in summary:
        c = summary["centralized"]
        lines.append(f"| centralized, same epochs | {_fmt(c['val_auroc_mean'])} | {_fmt(c['test_auroc_mean'])} |")
    lines += ["", "| site | train images | val images | patients | commonest findings (train) |",
              "|---|---|---|---|---|"]
    for s in summary["sites"]:
        tops = ", ".join(f"{f} {n}" for f, n in s["top_findings"].items())
        lines.append(f"| {s['name']} | {s['train_images']} | {s['val_images']} | {s['patients']} | {tops} |")
    return "\n".join(lines) + "\n"
