"""MkDocs hook: the dataset-card and recipe reference pages, generated at build time from
``datasets/*/card.toml`` and ``reproductions/*.toml`` (the files the package itself reads), so the
site cannot drift from them. Registered in ``mkdocs.yml`` (``hooks:``)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from mkdocs.structure.files import File

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _cell(value) -> str:
    """One table cell: lists joined, newlines and pipes escaped."""
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ", ".join(f"{k} = {v}" for k, v in value.items())
    text = " ".join(str(value).split())
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def _table(mapping: dict, head=("key", "value")) -> list[str]:
    """A two-column Markdown table of the scalar entries of ``mapping``."""
    rows = [f"| `{k}` | {_cell(v)} |" for k, v in mapping.items()]
    return [f"| {head[0]} | {head[1]} |", "|---|---|", *rows, ""] if rows else []


def source_options(name: str) -> dict[str, str]:
    """A dataset source's ``OPTIONS`` (read from ``datasets/<name>/source.py`` without importing it)."""
    tree = ast.parse((REPO / "datasets" / name / "source.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "OPTIONS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def dataset_page(path: Path) -> str:
    """The reference page of one dataset card."""
    card = tomllib.loads(path.read_text(encoding="utf-8"))
    name = path.parent.name
    out = [f"# `{name}`: {card.get('title', name)}", "",
           f"Generated from `datasets/{name}/card.toml`. Phantom in this layout: "
           f"`cxr-tf synth {name} OUT_DIR`; records: `cxr-tf prepare {name} --data-dir DIR --out RECORDS`.", ""]
    about = {k: card[k] for k in ("version", "modality", "license", "label_method", "views", "annotations_note")
             if k in card}
    out += _table(about, ("", ""))
    for key, heading in (("how_to_obtain", "How to obtain"), ("citation", "Citation")):
        if key in card:
            out += [f"## {heading}", "", " ".join(card[key].split()), ""]
    if card.get("findings"):
        out += ["## Findings (the model's output order)", "",
                ", ".join(f"`{f}`" for f in card["findings"]), ""]
    options = source_options(name)
    if options:
        out += ["## Source options", "", f"`cxr-tf prepare {name} -o KEY=VALUE` (or `--key value`).", ""]
        out += _table(options, ("option", "meaning"))
    for key, heading in (("splits", "Splits"), ("expected", "Expected counts of the full release"),
                         ("crosswalk", "Crosswalk (shared concept → this dataset's finding)")):
        if card.get(key):
            out += [f"## {heading}", ""] + _table(card[key])
    for rname, rel in (card.get("relabels") or {}).items():
        out += [f"## Relabels: `{rname}` (`-o test_labels={rname}`)", ""] + _table(rel)
    return "\n".join(out) + "\n"


def recipe_page(path: Path) -> str:
    """The reference page of one reproduction recipe."""
    r = tomllib.loads(path.read_text(encoding="utf-8"))
    name = path.stem
    out = [f"# `{name}`: {r.get('title', name)}", "",
           f"Generated from `reproductions/{name}.toml`. Run: `cxr-tf reproduce {name} --data-dir DIR --out OUT`; "
           f"on phantoms: `cxr-tf reproduce {name} --demo --out OUT`; the recipe beside the paper's: "
           f"`cxr-tf reproduce {name} --dry-run --out OUT`.", ""]
    out += _table({k: r[k] for k in ("citation", "dataset", "tasks") if k in r}, ("", ""))
    sections = (("train", "Training settings (TrainConfig fields)"), ("prepare", "Prepare"),
                ("policies", "Uncertainty policies (`--policy`)"), ("ensemble", "Ensemble"),
                ("evaluate", "Evaluation"), ("paper", "The paper's recipe"), ("demo", "`--demo`"))
    for key, heading in sections:
        if r.get(key):
            out += [f"## {heading}", ""] + _table(r[key])
    ref = r.get("reference") or {}
    if ref.get("auroc"):
        cols = ref.get("columns") or ["AUROC"]
        out += ["## Published AUROC", "", _cell(ref.get("source", "")), "",
                "| finding | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {f} | " + " | ".join(_cell(v) for v in (vals if isinstance(vals, list) else [vals])) + " |"
                for f, vals in ref["auroc"].items()]
        out.append("")
        if ref.get("note"):
            out += [_cell(ref["note"]), ""]
    return "\n".join(out) + "\n"


def _index(title: str, intro: str, links: list[tuple[str, str]]) -> str:
    return "\n".join([f"# {title}", "", intro, "", *[f"- [{t}]({p})" for t, p in links], ""])


def on_config(config):
    """List every generated card and recipe page in the navigation, under its index page."""
    pages = {"reference/datasets/index.md": [(p.parent.name, f"reference/datasets/{p.parent.name}.md")
                                             for p in sorted((REPO / "datasets").glob("*/card.toml"))],
             "reference/recipes/index.md": [(p.stem, f"reference/recipes/{p.stem}.md")
                                            for p in sorted((REPO / "reproductions").glob("*.toml"))]}

    def expand(items):
        out = []
        for item in items:
            if isinstance(item, dict):
                (title, value), = item.items()
                if isinstance(value, list):
                    out.append({title: expand(value)})
                elif value in pages:
                    out.append({title: [{"Overview": value}, *({n: uri} for n, uri in pages[value])]})
                else:
                    out.append(item)
            else:
                out.append(item)
        return out

    config["nav"] = expand(config["nav"])
    return config


def on_files(files, config):
    """Add the generated pages (they exist only in the built site)."""
    cards = sorted((REPO / "datasets").glob("*/card.toml"))
    recipes = sorted((REPO / "reproductions").glob("*.toml"))
    pages = {f"reference/datasets/{p.parent.name}.md": dataset_page(p) for p in cards}
    pages |= {f"reference/recipes/{p.stem}.md": recipe_page(p) for p in recipes}
    pages["reference/datasets/index.md"] = _index(
        "Dataset cards", "One page per `datasets/<name>/card.toml`; `cxr-tf datasets --options` prints the same.",
        [(p.parent.name, f"{p.parent.name}.md") for p in cards])
    pages["reference/recipes/index.md"] = _index(
        "Recipes", "One page per `reproductions/<name>.toml`, the recipes `cxr-tf reproduce` runs.",
        [(p.stem, f"{p.stem}.md") for p in recipes])
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pages["index.md"] = readme.replace("](docs/", "](")     # the README is the front page
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files
