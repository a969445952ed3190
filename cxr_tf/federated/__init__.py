"""Federated training across sites on Flower's message API (``flwr`` 1.41, the ``federated``
extra).

- :mod:`cxr_tf.federated.plan`: what a federation trains (the shared config, the sites, the
  evaluation sets), as plain data both apps read.
- :mod:`cxr_tf.federated.client`: the site side, a ``ClientApp`` that trains the shared model on
  the site's records (FedProx's proximal term added by the client) and sends back only weights
  and a few scalar metrics, checked by :func:`cxr_tf.federated.client.audit_mod`.
- :mod:`cxr_tf.federated.server`: the coordinator, a ``ServerApp`` running FedAvg or FedProx,
  logging per-round global validation AUROC to a CSV and TensorBoard.
- :mod:`cxr_tf.federated.simulate`: ``cxr-tf federated``, the whole federation simulated locally,
  beside centralized training on the same data and total epochs.
- :mod:`cxr_tf.federated.deploy`: the Flower App directory for a real deployment
  (``flower-superlink`` + one ``flower-supernode`` per hospital).

Flower sends usage telemetry unless ``FLWR_TELEMETRY_ENABLED=0``; importing this package turns it
off (hospitals must opt in, not out), also when ``flwr`` was imported first (it reads the variable
once, at import). A user who set the variable keeps their choice.
"""

from __future__ import annotations

import os
import sys

if "FLWR_TELEMETRY_ENABLED" not in os.environ:
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    if "flwr.supercore.telemetry" in sys.modules:
        sys.modules["flwr.supercore.telemetry"].FLWR_TELEMETRY_ENABLED = "0"

STRATEGIES = ("fedavg", "fedprox")
