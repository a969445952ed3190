"""The documentation site builds with ``mkdocs build --strict`` (broken links, anchors and
references fail it), and the generated pages hold what they are generated from: every command of
the click group, every dataset card's findings, every recipe's published AUROC. Skips when MkDocs
is not installed (it comes with the ``dev`` extra)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from cxr_tf.cli import main
from cxr_tf.core import cards

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings")
pytest.importorskip("mkdocs_click")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)})
    assert res.returncode == 0, res.stderr[-4000:]
    yield out
    shutil.rmtree(out, ignore_errors=True)


def _text(path: Path) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_every_guide_and_reference_page_is_built(site):
    for page in (REPO / "docs").rglob("*.md"):
        rel = page.relative_to(REPO / "docs").with_suffix("")
        built = site / ("index.html" if rel.name == "index" and rel.parent == Path(".") else rel / "index.html")
        assert built.is_file(), built


def test_front_page_is_the_readme_with_links_into_the_site(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "cxr-tf reproduce chexnet --demo" in " ".join(_text(site / "index.html").split())
    assert 'href="guides/install/"' in html and 'href="docs/' not in html


def test_cli_reference_is_generated_from_the_click_group(site):
    text = _text(site / "reference/cli/index.html")
    for name, cmd in main.commands.items():
        assert f"cxr-tf {name}" in text, name
        for param in cmd.params:
            if getattr(param, "help", None) and not param.hidden:
                assert param.opts[-1] in text, (name, param.opts)
    assert "--uncertain-as" in text


def test_card_and_recipe_pages_are_generated_from_their_toml(site):
    for name in cards.available("datasets"):
        text = _text(site / f"reference/datasets/{name}/index.html")
        assert all(f in text for f in cards.dataset_card(name)["findings"]), name
    for name in cards.available("reproductions"):
        text = _text(site / f"reference/recipes/{name}/index.html")
        recipe = cards.reproduction(name)
        assert recipe["title"] in text
        for finding, values in (recipe.get("reference", {}).get("auroc") or {}).items():
            values = values if isinstance(values, list) else [values]
            assert finding in text and str(values[-1]) in text, (name, finding)


def test_api_reference_renders_docstrings(site):
    text = _text(site / "reference/api/index.html")
    assert "Imports Keras (and TensorFlow) on first use." in " ".join(text.split())   # cxr_tf.load_model
    assert "make_dataset" in text and "TrainConfig" in text
