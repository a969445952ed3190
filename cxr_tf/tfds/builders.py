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
``boxes``    Sequence of bbox + label     ChestX-ray14 only: ground-truth boxes, normalized
============ ============================ ==================================================

Splits are the source's official ones (``train``, ``validation``, ``test``). Images listed but
absent from ``manual_dir`` are an error naming them: TFDS has no counted skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from cxr_tf import cards, sources
from cxr_tf.errors import MissingImagesError
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
        if "bbox_file" in card.get("layout", {}):
            features["boxes"] = tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(names=findings)})
        return self.dataset_info_from_configs(
            description=f"{card['title']} ({card.get('version', '')}), read by cxr_tf.sources.{self.DATASET}. "
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
        with_boxes = "bbox_file" in self._card().get("layout", {})
        columns = ("path", "image_id", "patient", "study", "view", "age", "sex")
        for (path, image_id, patient, study, view, age, sex), y in zip(frame[list(columns)].itertuples(
                index=False, name=None), labels):
            pixels = decode_file(data.root / path, **data.decode)
            example = {"image": pixels[..., None], "image_id": image_id, "patient": str(patient),
                       "study": str(study), "view": "" if view != view else str(view),
                       "age": np.float32(age), "sex": "" if sex != sex else str(sex), "labels": y}
            if with_boxes:
                example["boxes"] = _boxes(boxes, image_id, data.bbox_frame, pixels.shape)
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


class Chestxray14(_CxrBuilder):
    """NIH ChestX-ray14 (TFDS has no builder for it: tensorflow/datasets#1688)."""

    DATASET = "chestxray14"
    MANUAL_DOWNLOAD_INSTRUCTIONS = cards.dataset_card("chestxray14")["how_to_obtain"]


class CxrChexpert(_CxrBuilder):
    """CheXpert, either variant, with Sex, Age, views and all four label states (0 = negative)."""

    DATASET = "chexpert"
    MANUAL_DOWNLOAD_INSTRUCTIONS = cards.dataset_card("chexpert")["how_to_obtain"]


class MimicCxr(_CxrBuilder):
    """MIMIC-CXR-JPG (2.0.0 / 2.1.0) with the NLP labels of the config's labeler, frontal views,
    the official split; ``manual_dir`` is the release folder (``physionet.org/files/mimic-cxr-jpg/2.1.0``)."""

    DATASET = "mimic"
    MANUAL_DOWNLOAD_INSTRUCTIONS = cards.dataset_card("mimic")["how_to_obtain"]
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="chexpert", description="labels: mimic-cxr-2.0.0-chexpert.csv (CheXpert labeler)"),
        tfds.core.BuilderConfig(name="negbio", description="labels: mimic-cxr-2.0.0-negbio.csv (NegBio)"),
    ]

    def _load_options(self) -> dict:
        return {"labels": self.builder_config.name}
