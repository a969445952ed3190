"""Packaging: every package is listed in setup.cfg, and the cards ship inside the wheel."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cxr_tf import cards

REPO = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cxr_tf").rglob("__init__.py")}
    assert tree | {"cxr_tf.datasets", "cxr_tf.reproductions"} == listed


def test_cards_load():
    assert "chestxray14" in cards.available("datasets")
    assert {"chexnet", "chestxray8"} <= set(cards.available("reproductions"))
    card = cards.dataset_card("chestxray14")
    assert card["expected"]["images"] == 112120 and len(card["findings"]) == 14
    chexnet = cards.reproduction("chexnet")
    assert set(chexnet["reference"]["auroc"]) == set(card["findings"])
    with pytest.raises(Exception, match="available"):
        cards.dataset_card("no_such_dataset")


def test_wheel_ships_cards_and_console_script(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.fail(res.stderr[-2000:])
    wheel = next(tmp_path.glob("cxr_tf-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "cxr_tf/datasets/chestxray14.toml" in names
    assert "cxr_tf/reproductions/chexnet.toml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cxr-tf = cxr_tf.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
