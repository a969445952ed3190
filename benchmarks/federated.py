"""Federated vs centralized on phantoms, and what a non-IID split does to it.

One command: ``python benchmarks/federated.py [--out runs/fed_bench] [--n 2400] [--rounds 6]
[--local-epochs 2]``. Synthesizes an NIH ChestX-ray14 phantom, then runs on the same records and
the same total epochs (rounds x local epochs):

1. centralized training on the pooled data (the baseline every ratio is against);
2. FedAvg over 3 IID sites;
3. FedAvg over 3 sites with a label skew (each patient's primary finding dealt by Dirichlet(alpha));
4. FedProx over the same skewed sites, for each mu.

Prints mean validation and test AUROC of each and its ratio to centralized, plus how skewed the
sites are (the share of each site's training positives taken by its commonest finding), and
writes ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def _concentration(out: Path) -> float:
    """How skewed the sites are: per finding, the share of its training positives on the site
    holding most of them, averaged over findings (1/3 for an even split over 3 sites, 1 when
    every finding lives on one site)."""
    from cxr_tf.records.reader import RecordsDir
    sites = [RecordsDir(p) for p in sorted((out / "sites").glob("site_*"))]
    pos = [s.splits["train"]["positives"] for s in sites]
    shares = [max(p[f] for p in pos) / max(1, sum(p[f] for p in pos)) for f in pos[0]]
    return sum(shares) / len(shares)


def main(argv=None) -> dict:
    """Run the four trainings and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/fed_bench")
    ap.add_argument("--n", type=int, default=2400, help="phantom images")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration of the label skew")
    ap.add_argument("--mu", default="0.001,0.01,0.05", help="FedProx's proximal weights (comma-separated)")
    args = ap.parse_args(argv)

    from cxr_tf.records.phantom import phantom_records
    from cxr_tf.federated.simulate import simulate

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    records = phantom_records(out / "data", "chestxray14", images=args.n, patients=args.n // 3, synth_size=96,
                              size=64)
    train = {"preset": "tiny", "weights": "none", "image_size": 64, "batch_size": 32, "lr": 3e-3, "verbose": 0}
    common = dict(records=records, sites=3, rounds=args.rounds, local_epochs=args.local_epochs, train=train)
    runs = {
        "FedAvg, IID": simulate(out / "iid", **common),
        f"FedAvg, label skew (alpha {args.alpha})": simulate(out / "skew_fedavg", skew="label", alpha=args.alpha,
                                                             compare=False, **common),
    }
    for mu in (float(m) for m in args.mu.split(",")):
        runs[f"FedProx mu {mu:g}, label skew"] = simulate(out / f"skew_fedprox_{mu:g}", skew="label", alpha=args.alpha,
                                                          strategy="fedprox", mu=mu, compare=False, **common)
    central = runs["FedAvg, IID"]["centralized"]
    base_val, base_test = central["val_auroc_mean"], central["test_auroc_mean"]["pooled"]
    epochs = args.rounds * args.local_epochs
    print(f"\n{args.n} phantom images, 3 sites, {args.rounds} rounds x {args.local_epochs} local epochs "
          f"= {epochs} epochs each; tiny CNN at 64 px")
    print(f"{'training':<38} {'val AUROC':>9} {'ratio':>6} {'test AUROC':>10} {'ratio':>6} {'seconds':>8}")
    print(f"{'centralized (pooled)':<38} {base_val:>9.3f} {1:>6.2f} {base_test:>10.3f} {1:>6.2f} {'':>8}")
    rows = {"centralized": {"val": base_val, "test": base_test}}
    for name, r in runs.items():
        v, t = r["federated"]["val_auroc_mean"], r["federated"]["test_auroc_mean"]["pooled"]
        rows[name] = {"val": v, "test": t, "seconds": r["seconds"], "sites": r["sites"]}
        print(f"{name:<38} {v:>9.3f} {v / base_val:>6.2f} {t:>10.3f} {t / base_test:>6.2f} {r['seconds']:>8.0f}")
    print(f"\nlabel concentration (share of a finding's training positives on its largest site; 0.33 = even): "
          f"IID {_concentration(out / 'iid'):.2f}, skew {_concentration(out / 'skew_fedavg'):.2f}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
