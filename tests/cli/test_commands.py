"""Every command: one spelling at the edge (a console script naming a ``fairseq_goodviews.cli`` module),
``--help`` under its own name, and one way to report an error."""

import argparse
import ast
import importlib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import fairseq_goodviews
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.errors import GoodviewsError

PACKAGE = Path(fairseq_goodviews.__file__).resolve().parent
COMMANDS = sorted(
    (ep for ep in entry_points(group="console_scripts") if ep.value.startswith("fairseq_goodviews.")),
    key=lambda ep: ep.name,
)


def test_the_installed_commands_are_the_ones_the_cli_package_holds():
    modules = {ep.value.split(":")[0] for ep in COMMANDS}
    assert len(COMMANDS) >= 16 and all(ep.name.startswith("goodviews-") for ep in COMMANDS)
    assert all(module.startswith("fairseq_goodviews.cli.") for module in modules), modules
    assert all(ep.value.endswith(":main") for ep in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda ep: ep.name)
def test_help_names_the_command(command, capsys):
    main = importlib.import_module(command.value.split(":")[0]).main
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {command.name} ")


def test_no_library_module_parses_arguments_or_has_a_main():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imports = isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names)
            main = isinstance(node, ast.FunctionDef) and node.name == "main" and node in tree.body
            if imports or main:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goodviews-example")
    parser.add_argument("path")
    return parser


def _raise(error: BaseException):
    def body(args: argparse.Namespace) -> None:
        raise error

    return body


def test_a_project_error_is_one_line_and_status_2(capsys):
    assert run_command(_parser(), _raise(GoodviewsError("data/x.mat: truncated file")), ["x"]) == 2
    assert capsys.readouterr().err == "goodviews-example: error: data/x.mat: truncated file\n"


def test_an_os_error_names_its_file(tmp_path, capsys):
    missing = tmp_path / "missing.csv"

    def read(args: argparse.Namespace) -> None:
        Path(args.path).read_text()

    assert run_command(_parser(), read, [str(missing)]) == 2
    assert capsys.readouterr().err == f"goodviews-example: error: {missing}: No such file or directory\n"


def test_a_bug_keeps_its_traceback_and_success_is_status_0():
    with pytest.raises(ZeroDivisionError):
        run_command(_parser(), _raise(ZeroDivisionError("bug")), ["x"])
    assert run_command(_parser(), lambda args: None, ["x"]) == 0
    assert run_command(_parser(), lambda args: 3, ["x"]) == 3
