"""The ``cxr-tf`` command line: help everywhere, no heavy imports for --help, and clear errors."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)])
def test_every_command_has_help(path):
    res = CliRunner().invoke(main, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output and "--help" in res.output


@pytest.mark.parametrize("args", [["--help"], ["prepare", "--help"], ["synth", "chestxray14", "--help"],
                                  ["train", "--help"], ["explain", "--help"], ["reproduce", "--help"],
                                  ["datasets"], ["tune", "--help"], ["federated", "--help"],
                                  ["federated-app", "--help"]])
def test_help_does_not_import_tensorflow_or_pydicom(args):
    code = ("import sys\nfrom cxr_tf.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'pydicom') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_synth_then_prepare(tmp_path):
    runner = CliRunner()
    data, rec = tmp_path / "nih", tmp_path / "rec"
    res = runner.invoke(main, ["synth", "chestxray14", str(data), "--n", "30", "--patients", "10",
                               "--size", "48", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert (data / "Data_Entry_2017_v2020.csv").read_text().startswith("Image Index,Finding Labels,")
    assert not (data / "test_list.txt").read_text().endswith("\n")
    res = runner.invoke(main, ["prepare", "chestxray14", "--data-dir", str(data), "--out", str(rec),
                               "--size", "32", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 30 of 30 listed images" in res.output
    assert (rec / "summary.json").is_file()


def test_prepare_missing_images_is_one_clear_line(tmp_path, make_layout):
    data = make_layout(tmp_path / "nih")
    next(data.glob("images_*/images/00000002_000.png")).unlink()
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(data),
                                    "--out", str(tmp_path / "rec"), "--workers", "1"])
    assert res.exit_code == 2
    assert "error:" in res.output and "1 listed image(s) not found" in res.output
    assert "00000002_000.png" in res.output and "--allow-missing" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(data),
                                    "--out", str(tmp_path / "rec"), "--workers", "1", "--allow-missing"])
    assert res.exit_code == 0 and "skipped: 1 missing, 0 unreadable" in res.output


@pytest.mark.parametrize("args", [["evaluate", "--run", "{d}"], ["localize", "--run", "{d}"],
                                  ["train", "--records", "{d}", "--out", "{d}/run"]])
def test_not_a_run_or_records_dir_is_one_clear_line(tmp_path, args):
    res = CliRunner().invoke(main, [a.format(d=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and str(tmp_path) in res.output and "Traceback" not in res.output


def test_unknown_choices_are_one_clear_line(tmp_path, records_dir):
    res = CliRunner().invoke(main, ["train", "--records", str(records_dir), "--out", str(tmp_path / "r"),
                                    "--preset", "nonesuch"])
    assert res.exit_code == 2 and "'nonesuch' is not one of 'chexnet'" in res.output
    res = CliRunner().invoke(main, ["train", "--records", str(records_dir), "--out", str(tmp_path / "r"),
                                    "--set", "learning_rate=0.1"])
    assert res.exit_code == 2 and "unknown setting 'learning_rate'; did you mean 'lr'?" in res.output
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(tmp_path), "--out",
                                    str(tmp_path / "rec"), "--option", "views=frontal"])
    assert res.exit_code == 2 and "chestxray14 has no option(s) ['views']" in res.output
    assert not (tmp_path / "r").exists()


def test_a_library_bug_is_not_dressed_as_a_user_error(monkeypatch, tmp_path, make_layout):
    """Only cxr_tf's own errors become one line and exit 2; anything else keeps its traceback."""
    import cxr_tf.records.prepare

    def broken(*args, **kwargs):
        raise ValueError("a bug")
    monkeypatch.setattr(cxr_tf.records.prepare, "prepare", broken)
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(make_layout(tmp_path / "nih")),
                                    "--out", str(tmp_path / "rec")])
    assert res.exit_code == 1 and isinstance(res.exception, ValueError) and "error:" not in res.output


def test_source_options_as_flags(tmp_path, mimic_dirs):
    """``prepare mimic --labels negbio --limit-studies 6`` is ``-o labels=negbio -o limit_studies=6``."""
    import json
    out = tmp_path / "rec"
    res = CliRunner().invoke(main, ["prepare", "mimic", "--data-dir", str(mimic_dirs["jpg"]), "--out", str(out),
                                    "--size", "32", "--workers", "1", "--split", "random", "--labels", "negbio",
                                    "--limit-studies=6", "--views", "all"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["options"] == {"labels": "negbio", "limit_studies": 6, "views": "all"}
    assert "negbio (NLP) labels" in res.output and "excluded by limit_studies=6" in res.output
    res = CliRunner().invoke(main, ["prepare", "mimic", "--data-dir", str(mimic_dirs["jpg"]), "--out", str(out),
                                    "--labelz", "negbio"])
    assert res.exit_code == 2 and "mimic has no option(s) ['labelz']" in res.output and "labels" in res.output
    res = CliRunner().invoke(main, ["prepare", "mimic", "--data-dir", str(mimic_dirs["jpg"]), "--out", str(out),
                                    "--labels"])
    assert res.exit_code == 2 and "--labels needs a value" in res.output


def test_synth_dicom_only_where_there_is_a_dicom_release(tmp_path):
    res = CliRunner().invoke(main, ["synth", "chestxray14", str(tmp_path / "x"), "--n", "4", "--dicom"])
    assert res.exit_code == 2 and "no DICOM release" in res.output
    res = CliRunner().invoke(main, ["synth", "mimic", str(tmp_path / "m"), "--n", "6", "--patients", "3",
                                    "--size", "32", "--dicom"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "cxr-record-list.csv.gz").is_file() and list((tmp_path / "m").rglob("*.dcm"))


def _leaves(group, path=()):
    import click
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_every_command_shows_an_example_and_every_option_has_help():
    import click
    missing = []
    for path, cmd in _leaves(main):
        res = CliRunner().invoke(main, [*path, "--help"])
        if "Example: cxr-tf " + " ".join(path) not in " ".join(res.output.split()):
            missing.append(f"{' '.join(path)}: no example")
        missing += [f"{' '.join(path)} {p.opts[0]}: no help" for p in cmd.params
                    if isinstance(p, click.Option) and not p.help]
    assert not missing, "\n".join(missing)


def test_repeatable_options_say_so_and_defaults_are_written_one_way():
    import click
    problems = []
    for path, cmd in _leaves(main):
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.hidden:
                continue
            name = f"{' '.join(path)} {p.opts[-1]}"
            if p.multiple and "repeatable" not in (p.help or "").lower():
                problems.append(f"{name}: repeatable, and its help does not say so")
            if "(default" in (p.help or ""):
                problems.append(f"{name}: write the default as [default: ...]")
    assert not problems, "\n".join(problems)
