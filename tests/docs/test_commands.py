"""Every ``cxr-tf`` command in the README and the documentation site is checked against the click
group without running it: the (sub)command exists, every option is one that command accepts (and
not a hidden, deprecated spelling), every value of a choice option or argument is one of its
choices, numbers parse, flags take no value, required options and arguments are there. Blocks a
page marks ``<!-- runnable -->`` are also run, in order, on phantoms (slow test); blocks marked
``<!-- runnable-manual -->`` are run by hand (they train) and are checked like the rest."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from cxr_tf.cli import main

REPO = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", ""}
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SEPARATORS = {";", "&&", "||", "|", "&"}
REDIRECTS = {">", ">>", "<", "<<", "2>", "2>&1", "&>"}


@dataclass
class Block:
    """One fenced shell block of a page: where it starts, its text, and its mark."""

    path: Path
    line: int
    text: str
    mark: str | None          # "runnable", "runnable-manual" or None


def pages() -> list[Path]:
    """The README and every Markdown page of the site."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced shell code blocks of a Markdown file, with the ``<!-- runnable... -->`` mark that
    precedes a block (blank lines between allowed)."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    out, i, mark = [], 0, None
    while i < len(lines):
        m = re.fullmatch(r"\s*<!--\s*(runnable(?:-manual)?)\s*-->\s*", lines[i])
        if m:
            mark = m.group(1)
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            start, lang, body = i + 1, f.group(2).lower(), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            if lang in SHELL_LANGS:
                out.append(Block(path, start + 1, "\n".join(body), mark))
            mark = None
        elif lines[i].strip():
            mark = None
        i += 1
    return out


def commands(block: Block) -> list[tuple[int, list[str]]]:
    """The ``cxr-tf`` invocations of a shell block as (line number, arguments after ``cxr-tf``):
    continuation lines joined, comments dropped, environment assignments and ``&&``/``;``/``|``
    chains handled, redirections cut off."""
    found, logical, first = [], "", None
    heredoc = None
    for n, raw in enumerate(block.text.splitlines(), start=block.line):
        if heredoc:
            heredoc = None if raw.strip() == heredoc else heredoc
            continue
        m = re.search(r"<<-?\s*'?\"?(\w+)", raw)
        if m:
            heredoc = m.group(1)
        first = n if first is None else first
        if raw.rstrip().endswith("\\"):
            logical += raw.rstrip()[:-1] + " "
            continue
        logical += raw
        found += [(first, args) for args in _invocations(logical)]
        logical, first = "", None
    if logical:
        found += [(first, args) for args in _invocations(logical)]
    return found


def _invocations(line: str) -> list[list[str]]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split, lex.commenters = True, "#"
    tokens, segment, out = list(lex), [], []
    for tok in [*tokens, ";"]:
        if tok in SEPARATORS:
            if "cxr-tf" in segment:
                args = segment[segment.index("cxr-tf") + 1:]
                cut = next((k for k, a in enumerate(args) if a in REDIRECTS or a[:1] in "<>"), len(args))
                out.append(args[:cut])
            segment = []
        else:
            segment.append(tok)
    return out


def _choices(param: click.Parameter):
    return tuple(param.type.choices) if isinstance(param.type, click.Choice) else None


def _check_value(param: click.Parameter, value: str, where: str) -> list[str]:
    choices = _choices(param)
    if choices is not None and value not in choices:
        return [f"{where}: {value!r} is not one of {', '.join(choices)}"]
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        try:
            param.type.convert(value, param, None)
        except click.BadParameter:
            return [f"{where}: {value!r} is not a number ({param.type.name})"]
    return []


def check(args: list[str]) -> list[str]:
    """What is wrong with ``cxr-tf ARGS`` as the click group sees it (an empty list: nothing)."""
    cmd, path, args = main, ["cxr-tf"], list(args)
    while True:
        problems, rest = _check_command(cmd, path, args, group=isinstance(cmd, click.Group))
        if problems or not isinstance(cmd, click.Group) or rest is None:
            return problems
        if not rest:
            return [] if path == ["cxr-tf"] else [f"{' '.join(path)}: no subcommand"]
        name, args = rest[0], rest[1:]
        sub = cmd.get_command(click.Context(cmd), name)
        if sub is None:
            return [f"{' '.join(path)}: no command {name!r} (commands: {', '.join(cmd.list_commands(None))})"]
        cmd, path = sub, [*path, name]


def _check_command(cmd: click.Command, path: list[str], args: list[str], group: bool):
    """Check the options of one command; for a group, return the tokens from its subcommand on."""
    where = " ".join(path)
    opts = {o: p for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    opts.update({o: None for o in cmd.get_help_option_names(click.Context(cmd))})
    positional, problems, eager, seen, unknown, extra = [], [], False, set(), False, {}
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            positional += args[i:]
            break
        if tok.startswith("-") and len(tok) > 1 and not re.fullmatch(r"-[\d.]+", tok):
            name, _, attached = tok.partition("=") if tok.startswith("--") else (tok, "", "")
            if name not in opts and not tok.startswith("--") and len(tok) > 2:      # -vv, -ox=y
                head = tok[:2]
                if head in opts and opts[head] is not None and not opts[head].is_flag and not opts[head].count:
                    name, attached, _ = head, tok[2:], None
                elif all(f"-{c}" in opts for c in tok[1:]):
                    continue
            if name not in opts and cmd.context_settings.get("allow_extra_args") and name.startswith("--"):
                extra[name[2:].replace("-", "_")] = attached
                if not attached and _ != "=" and i < len(args) and not args[i].startswith("--"):
                    i += 1
                continue
            if name not in opts:
                problems.append(f"{where}: no option {name!r}")
                unknown = True            # its value, if it takes one, is not a stray argument
                continue
            param = opts[name]
            if param is None or getattr(param, "is_eager", False):
                eager = True
                continue
            if param.hidden:
                problems.append(f"{where}: {name} is a deprecated spelling; use its documented name")
            seen.add(param.name)
            if param.is_flag or param.count:
                if attached:
                    problems.append(f"{where}: {name} is a flag and takes no value")
                continue
            if attached or _ == "=":
                value = attached
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                problems.append(f"{where}: {name} needs a value")
                continue
            problems += _check_value(param, value, f"{where} {name}")
            if param.name == "options":                                             # -o KEY=VALUE
                extra[value.partition("=")[0]] = value
        else:
            if group:
                return problems, [tok, *args[i:]]
            positional.append(tok)
    if group:
        return problems, []
    if eager:
        return problems, None
    problems += [f"{where}: missing required option {p.opts[-1]}" for p in cmd.params
                 if isinstance(p, click.Option) and p.required and p.name not in seen]
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    k = 0
    for p in arguments:
        if p.nargs == -1:
            taken, k = positional[k:], len(positional)
            if p.required and not taken:
                problems.append(f"{where}: missing {p.human_readable_name}")
        else:
            taken, k = positional[k:k + p.nargs], k + p.nargs
            if len(taken) < p.nargs and p.required:
                problems.append(f"{where}: missing {p.human_readable_name}")
        for v in taken:
            problems += _check_value(p, v, f"{where} {p.human_readable_name}")
    problems += _check_source_options(cmd, positional, opts, args, extra, where)
    if k < len(positional) and not unknown:
        problems.append(f"{where}: unexpected argument(s) {' '.join(positional[k:])}")
    return problems, None


def _check_source_options(cmd, positional, opts, args, extra, where) -> list[str]:
    """Source options (``-o KEY=VALUE`` or ``--key value``) must be ones the dataset's source takes."""
    if not extra:
        return []
    from cxr_tf import sources
    dataset = positional[0] if cmd.name == "prepare" and positional else None
    if cmd.name == "stats" and "--dataset" in args:
        dataset = args[args.index("--dataset") + 1]
    if dataset not in sources.names():
        return []
    accepted = set(sources.get(dataset).OPTIONS)
    return [f"{where}: {dataset} has no source option {key!r} (it takes: {', '.join(sorted(accepted))})"
            for key in extra if key not in accepted]


def check_page(path: Path, text: str | None = None) -> list[str]:
    """Every problem of every ``cxr-tf`` command of a page, as ``file:line: problem``."""
    out = []
    for block in blocks(path, text):
        for line, args in commands(block):
            out += [f"{path.name}:{line}: {p}" for p in check(args)]
    return out


def _documented():
    return [(p, line, args) for p in pages() for b in blocks(p) for line, args in commands(b)]


# ---- the checker itself


def test_the_checker_reports_a_bad_option_choice_command_and_value(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("\n".join([
        "Some prose with cxr-tf train --nonesuch outside a block (not checked).", "",
        "```bash",
        "cxr-tf train --records R --out runs/x --nonsense 3          # a bad option",
        "cxr-tf ensemble runs/a runs/b --out E --by val_auroc_tasks   # a bad choice",
        "cxr-tf trian --records R --out X                             # a bad command",
        "cxr-tf prepare chestxray14 --data-dir D --out R \\",
        "    --size big                                               # continued, not a number",
        "cxr-tf synth nih runs/p && cxr-tf label r.csv --out o.csv --uncertain positive",
        "cxr-tf prepare chexpert --data-dir D --out R --uncertain ones   # a train option under prepare",
        "cxr-tf train --out runs/x --resume yes                       # a flag given a value",
        "cxr-tf export runs/x --out m.onnx                            # a required option missing",
        "cxr-tf prepare mimic --data-dir D --out R --labels negbio --view PA -o limit=3   # source options",
        "```", "",
        "```python",
        "subprocess.run(['cxr-tf', 'train', '--nonesuch'])            # not a shell block",
        "```", ""]))
    problems = check_page(page)
    expected = ["bad.md:4: cxr-tf train: no option '--nonsense'",
                "bad.md:5: cxr-tf ensemble --by: 'val_auroc_tasks' is not one of mean_auroc, val_loss",
                "bad.md:6: cxr-tf: no command 'trian'",
                "bad.md:7: cxr-tf prepare --size: 'big' is not a number",
                "bad.md:9: cxr-tf synth DATASET: 'nih' is not one of",
                "bad.md:9: cxr-tf label: --uncertain is a deprecated spelling",
                "bad.md:10: cxr-tf prepare: chexpert has no source option 'uncertain'",
                "bad.md:11: cxr-tf train: unexpected argument(s) yes",
                "bad.md:12: cxr-tf export: missing required option --format",
                "bad.md:13: cxr-tf prepare: mimic has no source option 'view'",
                "bad.md:13: cxr-tf prepare: mimic has no source option 'limit'"]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert len(problems) == len(expected), problems


def test_the_checker_passes_good_commands(tmp_path):
    page = tmp_path / "good.md"
    page.write_text("\n".join([
        "<!-- runnable -->", "```bash",
        "export X=1; cxr-tf synth chestxray14 runs/p --n 30 --size 64   # comment",
        "KERASTUNER_TUNER_ID=chief cxr-tf tune --records R --out T --trials 4",
        "cxr-tf -v prepare chestxray14 --data-dir runs/p --out runs/r -o val_fraction=0.2 --size=64",
        "cxr-tf train --records R --out X --set 'crop_scale=[0.8,1.0]' --resume > log.txt",
        "cxr-tf train --help", "cxr-tf datasets", "cxr-tf --version",
        "cxr-tf federated --demo --out runs/f", "```"]))
    assert check_page(page) == []
    (block,) = blocks(page)
    assert block.mark == "runnable" and len(commands(block)) == 8


# ---- the documentation


def test_the_site_has_commands_to_check():
    found = _documented()
    assert len(found) > 100 and {p.name for p, _, _ in found} >= {"README.md", "install.md", "nih-chexnet.md"}


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_documented_command_is_accepted(page):
    problems = check_page(page)
    assert not problems, "\n".join(problems)


def test_every_guide_has_a_phantom_variant():
    for guide in sorted((REPO / "docs" / "guides").glob("*.md")):
        marks = {b.mark for b in blocks(guide)}
        assert marks & {"runnable", "runnable-manual"}, f"{guide.name}: no block marked runnable"


def _runnable():
    return [p for p in pages() if any(b.mark == "runnable" for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable(), ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks_run_on_phantoms(page, tmp_path):
    """The blocks a page marks runnable, in order, in one fresh folder, as a user would type them.
    They are the commands without TensorFlow (synth, prepare, stats, label, dicom, merge, dry runs),
    so they finish in seconds; the training ones are marked runnable-manual."""
    script = "\n".join(b.text for b in blocks(page) if b.mark == "runnable")
    env_path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PATH": env_path})
    assert res.returncode == 0, f"{page.name}:\n{script}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n" \
                                f"{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr
