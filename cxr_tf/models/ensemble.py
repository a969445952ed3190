"""Ensembles as one model: the members' graphs side by side in one flat functional model, their
probabilities averaged in the graph (CheXpert's top-10 checkpoints x 3 runs, CheXNeXt's
ensemble). The result takes the same input and gives the same output as any cxr_tf model, so
evaluate, predict, explain, localize and export take it unchanged.
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.models.build import cam_layer, contract_model, findings_of, preprocessing_of
from cxr_tf.models.layers import PACKAGE, Pixels, _Findings

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(PACKAGE)
class EnsembleMean(_Findings, keras.layers.Layer):
    """The mean of the members' probabilities, [B, K]; carries the findings, the thresholds and
    each member's CAM layer (Grad-CAM of an ensemble looks at its first member's)."""

    def __init__(self, findings, cam_layers=(), thresholds=None, thresholds_rule=None, **kwargs):
        super().__init__(**kwargs)
        self._set_findings(findings, thresholds, thresholds_rule)
        self.cam_layers = [str(name) for name in cam_layers]

    def call(self, members):
        return ops.mean(ops.stack(members, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def cam_kernel(self, model):
        raise CxrConfigError("CAM weights feature maps by one model's prediction layer; an ensemble has "
                             "several", key="method", fix="gradcam")

    def get_config(self):
        return {**super().get_config(), **self._findings_config(), "cam_layers": self.cam_layers}


def _flat_copy(member: keras.Model, x, prefix: str):
    """Apply a renamed copy of each of ``member``'s layers to ``x`` in graph order, so its layers
    join the caller's graph flat (Grad-CAM needs that; a nested model is not connected), and copy
    the weights. Returns the copy's output tensor."""
    copies = {}

    def copy(layer):
        if id(layer) not in copies:
            config = layer.get_config()
            config["name"] = f"{prefix}{layer.name}"
            copies[id(layer)] = (layer, layer.__class__.from_config(config))
        return copies[id(layer)][1]

    out = member._run_through_graph([x], operation_fn=copy)   # Keras' own graph walk (clone_model's)
    for original, new in copies.values():
        new.set_weights(original.get_weights())
    return out


def ensemble(models, name: str = "cxr_ensemble") -> keras.Model:
    """One model averaging the probabilities of ``models`` (cxr_tf models, or training models,
    which are turned into their one-probability form). They must share the findings and the
    input size; the stored size and aspect handling recorded are the first member's."""
    members = [contract_model(m) for m in models]
    if not members:
        raise CxrConfigError("no models to ensemble", key="models")
    findings, prep = findings_of(members[0]), preprocessing_of(members[0])
    for m in members[1:]:
        if findings_of(m) != findings:
            raise CxrConfigError(f"members predict different findings: {findings} vs {findings_of(m)}", key="models")
        other = preprocessing_of(m)
        if other["input_size"] != prep["input_size"]:
            raise CxrConfigError(f"members take different input sizes ({prep['input_size']} vs "
                                 f"{other['input_size']})", key="models")
        if (other["stored_size"], other["aspect"]) != (prep["stored_size"], prep["aspect"]):
            log.warning("members were trained on records prepared differently (%s vs %s); the ensemble "
                        "records the first member's", other, prep)
    inputs = keras.Input((prep["input_size"], prep["input_size"], 1), name="image")
    x = Pixels(prep["stored_size"], prep["aspect"], name="pixels")(inputs)
    outputs, cams = [], []
    for i, member in enumerate(members):
        outputs.append(_flat_copy(member, x, f"m{i}_"))
        try:
            cams.append(f"m{i}_{cam_layer(member)}")
        except Exception:   # a member that is itself an ensemble, or of an unknown backbone
            cams.append("")
    out = EnsembleMean(findings, cams, name="predictions", dtype="float32")(outputs)
    return keras.Model(inputs, out, name=name)
