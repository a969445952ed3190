"""Shared fixtures. Test data is generated in the real layouts; ``../shared`` (real samples) is
optional and its tests skip cleanly without it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CXR_TF_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The real sample data beside the checkout; skip the test when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared (real sample data) is not present")
    return SHARED / "data"


@pytest.fixture(scope="session", autouse=True)
def _two_logical_cpus():
    """If TensorFlow is loaded, split the CPU into two logical devices before any op runs, so
    tf.distribute.MirroredStrategy can be tested on one machine. TF tests import TensorFlow (or a
    module that does) at module level, so it is loaded by collection time."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError:  # runtime already initialised by an earlier import-time op
            pass
    yield


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A small phantom ChestX-ray14 directory in the real layout (96 images, 64 px)."""
    from cxr_tf.datasets.chestxray14.phantom import write_dataset

    out = tmp_path_factory.mktemp("phantom_nih")
    write_dataset(out, n_images=96, n_patients=30, size=64, seed=3, workers=1)
    return out


@pytest.fixture
def damaged_phantom(phantom_dir, tmp_path) -> tuple[Path, Path, Path]:
    """(tree, truncated, empty): a copy of the phantom tree with one truncated PNG (images_003)
    and one empty file (images_004), what a copy interrupted mid-transfer leaves."""
    import shutil
    data = tmp_path / "nih"
    shutil.copytree(phantom_dir, data)
    truncated = sorted(data.glob("images_003/images/*.png"))[0]
    truncated.write_bytes(truncated.read_bytes()[:200])
    empty = sorted(data.glob("images_004/images/*.png"))[0]
    empty.write_bytes(b"")
    return data, truncated, empty


@pytest.fixture
def free_ports():
    """A function: ``free_ports(n)`` gives n distinct TCP ports free on 127.0.0.1 right now."""
    import socket

    def ports(n: int) -> list[int]:
        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        found = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        return found
    return ports


def _prepared(tmp_path_factory, folder: str, dataset: str, data_dir, **kw) -> Path:
    """A phantom dataset prepared into TFRecords at 48 px in a fresh temporary folder."""
    from cxr_tf.records.prepare import prepare

    out = tmp_path_factory.mktemp(folder)
    prepare(dataset, data_dir, out, size=48, **kw)
    return out


@pytest.fixture(scope="session")
def records_dir(phantom_dir, tmp_path_factory) -> Path:
    """``phantom_dir`` prepared into TFRecords at 48 px with small shards."""
    return _prepared(tmp_path_factory, "records", "chestxray14", phantom_dir, workers=2, images_per_shard=16)


@pytest.fixture(scope="session")
def chexpert_dir(tmp_path_factory) -> Path:
    """A small phantom CheXpert release in the real layout, with the labelled test set; returns
    the folder holding train.csv and valid.csv."""
    from cxr_tf.datasets.chexpert.phantom import write_dataset

    info = write_dataset(tmp_path_factory.mktemp("phantom_chexpert"), n_images=140, n_patients=36, size=64,
                         seed=4, workers=1, test_set=True)
    return Path(info["data_dir"])


@pytest.fixture(scope="session")
def chexpert_records(chexpert_dir, tmp_path_factory) -> Path:
    """``chexpert_dir`` (frontal views) prepared into TFRecords at 48 px."""
    return _prepared(tmp_path_factory, "chexpert_records", "chexpert", chexpert_dir, workers=1, images_per_shard=32)


@pytest.fixture(scope="session")
def mimic_dirs(tmp_path_factory) -> dict:
    """The same phantom MIMIC release twice, from one plan: ``{"jpg": MIMIC-CXR-JPG 2.1.0 folder,
    "dicom": MIMIC-CXR (DICOM) folder}``."""
    from cxr_tf.datasets.mimic.phantom import write_dataset

    root = tmp_path_factory.mktemp("phantom_mimic")
    kw = dict(n_images=90, n_patients=24, size=64, seed=6, workers=1)
    write_dataset(root / "mimic-cxr-jpg", **kw)
    write_dataset(root / "mimic-cxr", dicom=True, **kw)
    return {"jpg": root / "mimic-cxr-jpg", "dicom": root / "mimic-cxr"}


@pytest.fixture(scope="session")
def mimic_records(mimic_dirs, tmp_path_factory) -> Path:
    """The phantom MIMIC-CXR-JPG (frontal views, official split) prepared at 48 px."""
    return _prepared(tmp_path_factory, "mimic_records", "mimic", mimic_dirs["jpg"], workers=1, images_per_shard=32)


def _tiny_config(records, out, **kw):
    """A TrainConfig for the tiny preset at 48 px, two epochs (a few seconds of training)."""
    from cxr_tf.training.train import TrainConfig
    base = dict(records=str(records), out=str(out), preset="tiny", weights=None, epochs=2,
                batch_size=8, image_size=48, verbose=0, strategy="default")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(records_dir, tmp_path_factory) -> Path:
    """A finished tiny-preset training run on ``records_dir`` (shared by train/evaluate/localize
    tests), with the TensorBoard Grad-CAM images ``cxr-tf train`` adds."""
    from cxr_tf.explain.tensorboard import cam_images_for
    from cxr_tf.training.train import planned_config, train
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = _tiny_config(records_dir, out)
    train(cfg, callbacks=[cam_images_for(planned_config(cfg, False)[0], out)])
    return out


@pytest.fixture(scope="session")
def tiny_config():
    """The factory behind ``tiny_run``: ``tiny_config(records, out, **overrides)``."""
    return _tiny_config


HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
          "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000002_000.png,No Finding,0,2,80,M,AP,2500,2048,0.171,0.171",
    "00000003_000.png,Infiltration|Pleural_Thickening,0,3,74,F,PA,2500,2048,0.168,0.168",
    "00000004_000.png,Mass|Nodule,0,4,33,F,PA,2500,2048,0.168,0.168",
]


def _make_layout(root: Path, *, header=HEADER, rows=ROWS, trailing="", name="Data_Entry_2017_v2020.csv",
                folders=("images_001/images", "images_002/images"), test=("00000004_000.png",),
                boxes=("00000004_000.png,Mass,100.5,200.25,300,150",)):
    """A tiny ChestX-ray14 directory, byte-for-byte in the real formats."""
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join(r + trailing for r in [header, *rows]) + "\n")
    names = [r.split(",")[0] for r in rows]
    (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test))
    (root / "test_list.txt").write_text("\n".join(test))
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "\n".join(boxes) + "\n")
    for i, n in enumerate(names):
        folder = root / folders[i % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), 10 * i, np.uint8)).save(folder / n)
    return root

_make_layout.HEADER, _make_layout.ROWS = HEADER, ROWS


@pytest.fixture
def make_layout():
    """Build a tiny ChestX-ray14 directory in the real formats: ``make_layout(root, **options)``."""
    return _make_layout
