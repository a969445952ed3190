"""The coordinator's strategy: FedAvg's weighting against a hand-computed weighted mean, FedProx
announcing mu, and a failed site stopping the round instead of being averaged away."""

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict  # noqa: E402

from cxr_tf.federated.plan import Plan  # noqa: E402
from cxr_tf.federated.server import SiteFailure, _strategy  # noqa: E402


def _reply(arrays: dict, n: int, loss: float) -> Message:
    content = RecordDict({"arrays": ArrayRecord(array_dict={k: Array(v) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": n, "train_loss": loss})})
    return Message(content=content, message_type="train", dst_node_id=1)


def test_fedavg_is_the_num_examples_weighted_mean():
    rng = np.random.default_rng(0)
    sizes = [30, 10, 60]
    sites = [{"conv/kernel": rng.normal(size=(3, 3, 1, 4)).astype("float32"),
              "bn/moving_mean": rng.normal(size=(4,)).astype("float32")} for _ in sizes]
    history = {}
    strategy = _strategy(Plan(train={}), 3, history)
    arrays, metrics = strategy.aggregate_train(1, [_reply(s, n, 0.1 * (i + 1)) for i, (s, n) in
                                                   enumerate(zip(sites, sizes))])
    for key in sites[0]:
        expected = sum(n * s[key].astype("float64") for s, n in zip(sites, sizes)) / sum(sizes)
        np.testing.assert_allclose(arrays[key].numpy(), expected, rtol=1e-6)
    assert metrics["train_loss"] == pytest.approx((30 * 0.1 + 10 * 0.2 + 60 * 0.3) / 100)
    assert history[1]["sites_train_loss"] == pytest.approx(metrics["train_loss"])


def test_fedprox_sends_mu_to_every_site():
    strategy = _strategy(Plan(train={}, strategy="fedprox", mu=0.05), 2, {})

    class Grid:
        def get_node_ids(self):
            return [11, 12]
    msgs = list(strategy.configure_train(1, ArrayRecord(array_dict={}), ConfigRecord({"local-epochs": 2}), Grid()))
    assert sorted(m.metadata.dst_node_id for m in msgs) == [11, 12]
    assert all(m.content["config"]["proximal-mu"] == pytest.approx(0.05) for m in msgs)
    assert all(m.content["config"]["local-epochs"] == 2 for m in msgs)


def test_a_failed_site_stops_the_round():
    strategy = _strategy(Plan(train={}), 2, {})
    ok = _reply({"w": np.ones(2, "float32")}, 5, 0.1)
    failed = Message(content=RecordDict(), message_type="train", dst_node_id=1)
    failed = Message(error=Error(code=0, reason="records not found"), reply_to=failed)
    with pytest.raises(SiteFailure, match="records not found"):
        strategy.aggregate_train(1, [ok, failed])


def test_a_coordinator_without_records_still_builds_the_model():
    """Deployed without --val-records, the coordinator has no data: it builds the shared model to
    start from and scores nothing."""
    from cxr_tf.federated.server import global_model
    from cxr_tf.models import findings_of

    model, scorers = global_model(Plan(train={"preset": "tiny", "weights": "none", "image_size": 32,
                                              "loss": "weighted_bce", "strategy": "default"}))
    assert scorers == {} and len(findings_of(model)) == 14
