"""The site side: FedProx's proximal term against a hand computation, weights in and out by
name, and the audit that lets only weights and allowed scalars leave a site."""

import keras
import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402

from cxr_tf.federated.client import (AuditError, audit_mod, load_weights, proximal_model,  # noqa: E402
                                     reset_optimizer, weight_names, weights_record)
from cxr_tf.federated.plan import Plan, site_from_node_config  # noqa: E402
from cxr_tf.core.errors import CxrConfigError  # noqa: E402


def _tiny():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="hidden")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="sigmoid", name="out")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy")
    return model


def test_proximal_term_matches_a_hand_computation():
    inner = _tiny()
    prox = proximal_model(inner)
    prox.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = (np.random.default_rng(1).random((8, 2)) > 0.5).astype("float32")
    mu = 0.3
    prox.set_anchor(mu)
    anchor = [w.numpy().copy() for w in inner.trainable_weights]
    deltas = [np.random.default_rng(i).normal(size=w.shape).astype("float32") for i, w in
              enumerate(inner.trainable_weights)]
    for w, d in zip(inner.trainable_weights, deltas):
        w.assign(w.numpy() + d)
    y_pred = prox(x)
    plain = float(keras.losses.BinaryCrossentropy()(y, y_pred))
    expected = plain + mu / 2 * sum(float((d.astype("float64") ** 2).sum()) for d in deltas)
    got = float(prox.compute_loss(x=x, y=y, y_pred=y_pred))
    assert got == pytest.approx(expected, rel=1e-5)
    # the BN statistics are not trainable: not in the term, though they travel with the weights
    assert len(prox.anchor) == len(inner.trainable_weights) < len(inner.weights)
    assert all(np.allclose(a.numpy(), b) for a, b in zip(prox.anchor, anchor))
    prox.set_anchor(0.0)
    assert float(prox.compute_loss(x=x, y=y, y_pred=y_pred)) == pytest.approx(plain, rel=1e-6)


def test_proximal_gradient_pulls_towards_the_anchor():
    """One SGD step with lr η on a zero data loss moves each weight by −η·mu·(w − anchor)."""
    inner = _tiny()
    prox = proximal_model(inner)
    prox.compile(optimizer=keras.optimizers.SGD(0.5), loss=lambda y, p: keras.ops.sum(p) * 0.0)
    prox.set_anchor(0.2)
    before = [w.numpy() + 1.0 for w in inner.trainable_weights]
    for w, b in zip(inner.trainable_weights, before):
        w.assign(b)
    prox.train_on_batch(np.zeros((2, 4), "float32"), np.zeros((2, 2), "float32"))
    for w, b in zip(inner.trainable_weights, before):
        np.testing.assert_allclose(w.numpy(), b - 0.5 * 0.2 * 1.0, rtol=1e-5, atol=1e-6)


def test_weights_travel_by_name_and_shape():
    a, b = _tiny(), _tiny()
    for w in a.weights:
        w.assign(np.full(w.shape, 0.25, dtype=w.dtype))
    record = weights_record(a)
    assert list(record.keys()) == weight_names(a)
    load_weights(b, record)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights))
    wrong = ArrayRecord(array_dict={k: Array(np.zeros((1,), "float32")) for k in record.keys()})
    with pytest.raises(ValueError, match="shape"):
        load_weights(b, wrong)


def test_reset_optimizer_keeps_the_learning_rate():
    m = _tiny()
    m.train_on_batch(np.ones((2, 4), "float32"), np.ones((2, 2), "float32"))
    reset_optimizer(m.optimizer)
    assert float(m.optimizer.learning_rate) == pytest.approx(0.1)
    assert int(m.optimizer.iterations) == 0
    assert all(not np.any(v.numpy()) for v in m.optimizer.variables if v is not m.optimizer._learning_rate)


def _train_message(model):
    msg = Message(content=RecordDict({"arrays": weights_record(model), "config": ConfigRecord({"server-round": 1})}),
                  message_type="train", dst_node_id=1)
    return msg


@pytest.mark.parametrize("reply, error", [
    (lambda m, w: RecordDict({"arrays": w, "metrics": MetricRecord({"num-examples": 5, "train_loss": 0.1})}), None),
    (lambda m, w: RecordDict({"arrays": w, "metrics": MetricRecord({"num-examples": 5, "labels": [1.0, 0.0]})}),
     "not allowed"),
    (lambda m, w: RecordDict({"arrays": w, "metrics": MetricRecord({"num-examples": 5}),
                              "config": ConfigRecord({"patient": "P1"})}), "may carry only"),
    (lambda m, w: RecordDict({"arrays": ArrayRecord(array_dict={**{k: w[k] for k in w.keys()},
                                                                "images": Array(np.zeros((2, 2), "uint8"))}),
                              "metrics": MetricRecord({"num-examples": 5})}), "not the model weights"),
    (lambda m, w: RecordDict({"arrays": w, "metrics": MetricRecord({"num-examples": 5, "train_loss": [0.1, 0.2]})}),
     "one number"),
])
def test_the_audit_lets_only_weights_and_allowed_scalars_out(reply, error):
    model = _tiny()
    msg = _train_message(model)

    def handler(m, ctx):
        return Message(content=reply(model, weights_record(model)), reply_to=m)
    if error is None:
        assert audit_mod(msg, None, handler).content["metrics"]["train_loss"] == pytest.approx(0.1)
    else:
        with pytest.raises(AuditError, match=error):
            audit_mod(msg, None, handler)


def test_plans_refuse_what_cannot_run():
    with pytest.raises(CxrConfigError, match="belong to a site"):
        Plan(train={"records": "/x"})
    with pytest.raises(CxrConfigError, match="positive mu"):
        Plan(train={}, strategy="fedprox")
    with pytest.raises(CxrConfigError, match="proximal"):
        Plan(train={}, mu=0.1)
    with pytest.raises(CxrConfigError, match="unknown setting"):
        Plan(train={"learning_rate": 0.1})
    plan = Plan(train={"preset": "tiny"}, sites=[{"name": "a", "records": "/a"}], rounds=2)
    assert Plan.from_json(plan.to_json()) == plan
    with pytest.raises(CxrConfigError, match="node-config"):
        site_from_node_config({})
    assert site_from_node_config({"records": "/data/h1", "findings": "Atelectasis, Effusion"}).findings == [
        "Atelectasis", "Effusion"]
