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

On Apache Beam (``pip install 'cxr-tf[beam]'``): when the build is given Beam options, e.g.
``tfds build chestxray14 --imports cxr_tf.interop.tfds --manual_dir ...
--beam_pipeline_options="runner=DirectRunner,direct_num_workers=8,direct_running_mode=multi_processing"``
(or ``runner=FlinkRunner,flink_master=HOST:8081``), or
``download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=...))``,
``_generate_examples`` returns a Beam ``PTransform`` and the images are decoded on the workers. The
manifest is still read on the driver; the workers must see ``manual_dir`` at the same path.
"""

from __future__ import annotations

import functools
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

    def _generate_splits(self, dl_manager, download_config):
        # Beam only when asked for (DownloadConfig(beam_runner=...) or beam_options=..., as `tfds build
        # --beam_pipeline_options=...` does) and installed; otherwise the plain generator.
        self._use_beam = bool(download_config.beam_runner or download_config.beam_options) and _beam_installed()
        return super()._generate_splits(dl_manager, download_config)

    def _generate_examples(self, data, split):
        """The split's examples: a generator, or with Beam a ``PTransform`` that decodes each image
        on the workers (``beam.Create(rows) | beam.Map(_example)``)."""
        frame = data.manifest[data.manifest["split"] == split]
        labels = frame[list(data.findings)].to_numpy(np.float32)
        boxes = {i: [(b.x, b.y, b.w, b.h, b.finding) for b in g.itertuples(index=False)]
                 for i, g in data.boxes.groupby("image_id")} if len(data.boxes) else {}
        masks = {i: [(m.rle, m.finding) for m in g.itertuples(index=False)]
                 for i, g in data.masks.groupby("image_id")} if len(data.masks) else {}
        columns = ("path", "image_id", "patient", "study", "view", "age", "sex")
        rows = [(*values, y, boxes.get(values[1], []), masks.get(values[1], []))
                for values, y in zip(frame[list(columns)].itertuples(index=False, name=None), labels)]
        make = functools.partial(_example, root=str(data.root), decode=dict(data.decode), bbox_frame=data.bbox_frame,
                                 annotations=tuple(self._card().get("annotations", [])))
        if getattr(self, "_use_beam", False):
            beam = tfds.core.lazy_imports.apache_beam
            return f"images of {split}" >> beam.Create(rows) | f"decode {split}" >> beam.Map(make)
        return map(make, rows)


def _beam_installed() -> bool:
    """Whether apache-beam can be imported (the ``beam`` extra)."""
    import importlib.util
    return importlib.util.find_spec("apache_beam") is not None


def _example(row, *, root: str, decode: dict, bbox_frame, annotations) -> tuple[str, dict]:
    """One manifest row -> (key, example): the image decoded from disk (on a Beam worker, or here)."""
    path, image_id, patient, study, view, age, sex, y, boxes, masks = row
    pixels = decode_file(Path(root) / path, **decode)
    example = {"image": pixels[..., None], "image_id": image_id, "patient": str(patient),
               "study": str(study), "view": "" if view != view else str(view),
               "age": np.float32(age), "sex": "" if sex != sex else str(sex), "labels": y}
    if "boxes" in annotations:
        example["boxes"] = _boxes(boxes, bbox_frame, pixels.shape)
    if "masks" in annotations:
        example["masks"] = [{"rle": rle, "label": finding} for rle, finding in masks]
    return image_id, example


def _boxes(boxes, frame, shape):
    """An image's boxes ``(x, y, w, h, finding)`` as normalized ``tfds.features.BBox`` (the box
    list's frame, else pixels)."""
    h, w = shape
    sx, sy = (frame, frame) if frame else (w, h)
    out = []
    for x, y, bw, bh, finding in boxes:
        ymin, xmin = np.clip(y / sy, 0, 1), np.clip(x / sx, 0, 1)
        ymax, xmax = np.clip((y + bh) / sy, 0, 1), np.clip((x + bw) / sx, 0, 1)
        out.append({"bbox": tfds.features.BBox(float(ymin), float(xmin), float(ymax), float(xmax)), "label": finding})
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
