"""The dataset registry: every folder in ``datasets/`` with a card is a dataset, and every dataset
has the same parts (card, source, phantom writer, crosswalk entries, TFDS builder, its test)."""

from pathlib import Path

import pytest

from cxr_tf import sources
from cxr_tf.core import cards
from cxr_tf.vocab import crosswalk

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sources.names())
def test_every_dataset_has_every_part(name):
    folder = cards.data_dir("datasets") / name
    for part in (*sources.PARTS, "__init__.py"):
        assert (folder / part).is_file(), f"datasets/{name}/ has no {part}"
    assert (TESTS / "datasets" / f"test_{name}.py").is_file(), f"datasets/{name}/ has no tests/datasets/test_{name}.py"
    card = cards.dataset_card(name)
    for key in ("title", "license", "citation", "how_to_obtain", "findings", "splits", "expected", "synth",
                "crosswalk", "tfds", "label_method", "views", "annotations_note"):
        assert card.get(key), f"datasets/{name}/card.toml has no {key}"
    assert set(card.get("annotations", ["none"])) <= {"boxes", "masks"}, f"datasets/{name}: annotations"
    assert "contract" in card["synth"] and "seed" in card["splits"]
    source = sources.get(name)
    assert source.NAME == name and isinstance(source, sources.Source)
    assert callable(sources.synth_writer(name))
    mapped = {c[name] for c in crosswalk.concepts().values() if name in c}
    assert mapped == set(card["crosswalk"].values()) and mapped <= set(card["findings"])


def test_no_stray_folder_and_clear_errors(tmp_path):
    folders = {p.name for p in cards.data_dir("datasets").iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders == set(sources.names()), folders ^ set(sources.names())
    with pytest.raises(Exception, match="unknown dataset 'nonesuch'"):
        sources.get("nonesuch")
    with pytest.raises(Exception, match="unknown dataset 'nonesuch'"):
        sources.synth_writer("nonesuch")


def test_tfds_builders_come_from_the_registry():
    pytest.importorskip("tensorflow_datasets")
    from cxr_tf.interop import tfds as builders

    assert set(builders.BUILDERS) == set(sources.names())
    for name, cls in builders.BUILDERS.items():
        assert cls.name == cards.dataset_card(name)["tfds"]["name"] and cls.DATASET == name
