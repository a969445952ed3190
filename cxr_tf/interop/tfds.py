"""Thin ``GeneratorBasedBuilder``s over the same source -> manifest code ``cxr-tf prepare`` uses
(no second parser), with the dataset cards' download instructions.

Features of every example:

============ ============================ ==================================================
``image``    uint8 [H, W, 1], PNG         decoded by content (RGBA, 16-bit, DICOM converted)
``image_id`` text                         the dataset's own image identifier
``patient``  text                         patient identifier (splits are patient-disjoint)
``study``    text                         study identifier
``view``     text                         PA, AP, LATERAL, ...
``age``      float32                      years (NaN when unknown)
``sex``      text                         as the dataset spells it
``labels``   float32 [K]                  one entry per finding, in ``info.metadata["findings"]``
                                          order: 1 positive, **0 negative**, -1 uncertain,
                                          NaN not mentioned (the manifest's four states)
``boxes``    Sequence of bbox + label     datasets with boxes (card ``annotations``): normalized
``masks``    Sequence of rle + label      datasets with masks: cxr-tf's run-length text over
                                          the original pixels (:mod:`cxr_tf.imaging.masks`)
============ ============================ ==================================================

Splits are the source's official ones (``train``, ``validation``, ``test``). Images listed but
absent from ``manual_dir`` are an error naming them: TFDS has no counted skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from cxr_tf.core import cards
from cxr_tf import sources
from cxr_tf.core.errors import MissingImagesError
from cxr_tf.imaging import decode_file

LABEL_ENCODING = "1 positive, 0 negative, -1 uncertain, NaN not mentioned"
_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class _CxrBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The shared builder; subclasses name their dataset (``DATASET``)."""

    DATASET = ""
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "cxr_tf's sources, all label states, patients, studies and views."}

    def _card(self) -> dict:
        return cards.dataset_card(self.DATASET)

    def _load_options(self) -> dict:
        """Options for the source's ``load`` (a builder config may choose them)."""
        return {}

    def _info(self) -> tfds.core.DatasetInfo:
        card = self._card()
        findings = list(card["findings"])
        features = {
            "image": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
            "image_id": tfds.features.Text(), "patient": tfds.features.Text(), "study": tfds.features.Text(),
            "view": tfds.features.Text(), "age": np.float32, "sex": tfds.features.Text(),
            "labels": tfds.features.Tensor(shape=(len(findings),), dtype=np.float32),
        }
        if "boxes" in card.get("annotations", []):
            features["boxes"] = tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(names=findings)})
        if "masks" in card.get("annotations", []):
            features["masks"] = tfds.features.Sequence({
                "rle": tfds.features.Text(), "label": tfds.features.ClassLabel(names=findings)})
        return self.dataset_info_from_configs(
            description=f"{card['title']} ({card.get('version', '')}), read by cxr_tf.datasets.{self.DATASET}.source. "
                        f"labels: {LABEL_ENCODING}.",
            features=tfds.features.FeaturesDict(features), citation=card.get("citation", "").strip(),
            metadata=tfds.core.MetadataDict(findings=findings, label_encoding=LABEL_ENCODING))

    def _split_generators(self, dl_manager):
        data = sources.get(self.DATASET).load(Path(dl_manager.manual_dir), **self._load_options())
        if data.missing:
            raise MissingImagesError(data.root, data.missing)
        present = [s for s in _SPLITS if (data.manifest["split"] == s).any()]
        return {_SPLITS[s]: self._generate_examples(data, s) for s in present}

    def _generate_examples(self, data, split):
        frame = data.manifest[data.manifest["split"] == split]
        labels = frame[list(data.findings)].to_numpy(np.float32)
        boxes = data.boxes.groupby("image_id") if len(data.boxes) else None
        masks = data.masks.groupby("image_id") if len(data.masks) else None
        annotations = self._card().get("annotations", [])
        columns = ("path", "image_id", "patient", "study", "view", "age", "sex")
        for (path, image_id, patient, study, view, age, sex), y in zip(frame[list(columns)].itertuples(
                index=False, name=None), labels):
            pixels = decode_file(data.root / path, **data.decode)
            example = {"image": pixels[..., None], "image_id": image_id, "patient": str(patient),
                       "study": str(study), "view": "" if view != view else str(view),
                       "age": np.float32(age), "sex": "" if sex != sex else str(sex), "labels": y}
            if "boxes" in annotations:
                example["boxes"] = _boxes(boxes, image_id, data.bbox_frame, pixels.shape)
            if "masks" in annotations:
                example["masks"] = [] if masks is None or image_id not in masks.groups else [
                    {"rle": m.rle, "label": m.finding} for m in masks.get_group(image_id).itertuples(index=False)]
            yield image_id, example


def _boxes(groups, image_id, frame, shape):
    """An image's boxes as normalized ``tfds.features.BBox`` (the box list's frame, else pixels)."""
    if groups is None or image_id not in groups.groups:
        return []
    h, w = shape
    sx, sy = (frame, frame) if frame else (w, h)
    out = []
    for b in groups.get_group(image_id).itertuples(index=False):
        ymin, xmin = np.clip(b.y / sy, 0, 1), np.clip(b.x / sx, 0, 1)
        ymax, xmax = np.clip((b.y + b.h) / sy, 0, 1), np.clip((b.x + b.w) / sx, 0, 1)
        out.append({"bbox": tfds.features.BBox(float(ymin), float(xmin), float(ymax), float(xmax)), "label": b.finding})
    return out


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _builder(dataset: str) -> type:
    """The builder class of one registered dataset, from its card's ``[tfds]`` table (its TFDS
    name and configs, each config's source options) and ``how_to_obtain``."""
    card = cards.dataset_card(dataset)
    spec = card.get("tfds", {})
    configs = [tfds.core.BuilderConfig(name=name, description=c.get("description", ""))
               for name, c in spec.get("configs", {}).items()]
    options = {name: dict(c.get("options", {})) for name, c in spec.get("configs", {}).items()}

    def _load_options(self) -> dict:
        return options.get(self.builder_config.name, {}) if configs else {}

    attrs = {"DATASET": dataset, "MANUAL_DOWNLOAD_INSTRUCTIONS": card["how_to_obtain"],
             "__doc__": f"{card['title']}: generated from datasets/{dataset}/card.toml.",
             "__module__": __name__, "_load_options": _load_options}
    if configs:
        attrs["BUILDER_CONFIGS"] = configs
    return type(_camel(spec.get("name", dataset)), (_CxrBuilder,), attrs)


# One builder per registered dataset, registered with TFDS under its card's [tfds] name.
BUILDERS = {name: _builder(name) for name in sources.names()}
globals().update({cls.__name__: cls for cls in BUILDERS.values()})
