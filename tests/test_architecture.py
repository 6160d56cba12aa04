"""The architecture's rules, checked where they can drift: exit codes, CLI commands, messages, module size, twins.

- Exit codes: every error class carries its code and meaning; the ``--help``
  epilog and the README's table list exactly those (plus the CLI's 0, 130, 143).
- Commands: one ``cmd_<name>.py`` module per command, each in the one
  COMMANDS table, from which the parser is built.
- Library messages speak the API (``force=True``), never a CLI option; the
  CLI names the option for each API argument an error asks for.
- No module is longer than about 400 lines.
- A Keras wrapper's float twin lives with its registry entry; each such
  entry's twin is built and compared with QKeras's own output.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest
import zoo

import qextract
from qextract import _keras, errors
from qextract._keras import qkeras
from qextract.cli import COMMANDS, build_parser, main
from qextract.cli.exit_codes import epilog, exit_code_table
from qextract.cli.options import FLAGS, Command
from qextract.errors import ExportError, QExtractError, error_classes

PACKAGE = Path(qextract.__file__).parent
README = PACKAGE.parent / "README.md"
H5 = zoo.EXAMPLE
MAX_LINES = 420  # "about 400"


def _all_modules() -> list[str]:
    """Every module of the package, imported (so that every error class defined anywhere is known)."""
    names = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "qextract.") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    return names


# --- exit codes ---------------------------------------------------------------------------------------------


def test_every_error_class_is_in_errors_py_with_a_code_and_a_one_line_meaning():
    _all_modules()

    def every(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    found = [QExtractError, *every(QExtractError)]
    assert [c for c in found if c.__module__ != "qextract.errors"] == []
    assert set(found) == set(error_classes())
    for cls in found:
        assert isinstance(cls.exit_code, int) and 0 < cls.exit_code < 128, cls
        assert cls.meaning and "\n" not in cls.meaning, cls


def test_exit_codes_are_unique_per_meaning():
    by_code, by_meaning = {}, {}
    for cls in error_classes():
        by_code.setdefault(cls.exit_code, set()).add(cls.meaning)
        by_meaning.setdefault(cls.meaning, set()).add(cls.exit_code)
    assert all(len(m) == 1 for m in by_code.values()), by_code
    assert all(len(c) == 1 for c in by_meaning.values()), by_meaning
    # Classes sharing a code are one meaning: each is a kind of the first class with that code.
    for row in errors.exit_codes():
        first = getattr(errors, row.classes[0])
        assert all(issubclass(getattr(errors, name), first) for name in row.classes), row


def _epilog_rows(text: str) -> dict[int, str]:
    """The epilog's ``<code> <meaning> [<classes>]`` parts by code."""
    body = " ".join(text.split()).removeprefix("Exit codes: ").rstrip(".")
    return {int(part.split()[0]): part for part in body.split("; ")}


def test_the_epilog_lists_every_error_class_with_its_code_and_the_cli_codes():
    shown = build_parser().epilog
    assert shown == epilog()
    rows = _epilog_rows(shown)
    for cls in error_classes():
        assert re.search(rf"\[[^\]]*\b{cls.__name__}\b[^\]]*\]", rows[cls.exit_code]), (cls, rows[cls.exit_code])
    assert {0, 1, 130, 143} <= set(rows)
    assert set(rows) == {cls.exit_code for cls in error_classes()} | {0, 130, 143}


def test_the_cli_returns_the_code_of_the_error_class(capsys, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert main(["export", str(H5), "--out", str(tmp_path / "out")]) == ExportError.exit_code
    assert main(["verify", str(tmp_path / "out"), "--model", str(H5)]) == errors.NotAnExportError.exit_code


def _readme_exit_rows() -> dict[int, str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| exit code |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows[int(line.split("|")[1])] = line
    return rows


def test_the_readme_exit_code_table_lists_the_same_codes_and_classes():
    rows = _readme_exit_rows()
    assert set(rows) == {r.code for r in exit_code_table()}
    for row in exit_code_table():
        for name in row.classes:
            assert re.search(rf"\b{name}\b", rows[row.code]), f"README's row for exit code {row.code} lacks {name}"


# --- commands -----------------------------------------------------------------------------------------------


def test_every_command_module_is_one_entry_of_the_commands_table():
    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("cmd_*.py"))
    entries = [importlib.import_module(f"qextract.cli.{m}").COMMAND for m in modules]
    assert sorted(c.name for c in COMMANDS) == sorted(c.name for c in entries)
    assert all(e in COMMANDS for e in entries)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == [c.name for c in COMMANDS]  # the parser is built from the table, in its order


def test_adding_a_command_is_one_table_entry(monkeypatch, capsys):
    def add_arguments(p):
        p.add_argument("--times", type=int, default=1)

    def run(args):
        print("hello " * args.times)
        return 7

    monkeypatch.setattr("qextract.cli.app.COMMANDS", (*COMMANDS, Command("hello", "say hello", add_arguments, run)))
    assert main(["hello", "--times", "2", "--quiet"]) == 7
    assert capsys.readouterr().out.split() == ["hello", "hello"]


# --- messages -----------------------------------------------------------------------------------------------

_FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _library_sources() -> list[Path]:
    """Every module outside the CLI (and outside examples/, whose build script is a command of its own)."""
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("cli", "examples")]


def _strings_outside_docstrings(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
    return found


def _is_attribute_docstring(tree: ast.AST, lineno: int) -> bool:
    """A bare string right after an assignment (Sphinx's attribute docstring) documents, it is no message."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for before, stmt in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and stmt.lineno == lineno
                and isinstance(before, ast.Assign | ast.AnnAssign)
            ):
                return True
    return False


def test_library_messages_name_no_cli_option():
    offenders = []
    for path in _library_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for lineno, text in _strings_outside_docstrings(tree):
            if _FLAG.search(text) and not _is_attribute_docstring(tree, lineno):
                offenders.append(f"{path.relative_to(PACKAGE)}:{lineno}: {text[:80]!r}")
    assert offenders == [], "say it in API terms and pass arguments=(...) for the CLI:\n" + "\n".join(offenders)


def test_every_api_argument_an_error_names_has_a_cli_option():
    named = set()
    for path in _library_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "arguments" and isinstance(node.value, ast.Tuple):
                named |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    named |= {a for cls in error_classes() for a in cls.arguments}
    assert named and named <= set(FLAGS), named - set(FLAGS)


def test_library_error_speaks_the_api_and_the_cli_adds_the_options(capsys, tmp_path):
    from qextract.exporting.exporter import check_output

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError) as info:
        check_output(tmp_path / "out")
    message = str(info.value)
    assert "pass force=True to replace it" in message and not _FLAG.search(message)
    assert info.value.arguments == ("out_dir", "force")
    assert main(["export", str(H5), "--out", str(tmp_path / "out")]) == 8
    err = capsys.readouterr().err.strip()
    assert err == f"qextract: error: {message} On the command line: --out, --force."


def test_the_error_line_ends_the_message_before_naming_the_options():
    from qextract.cli.app import error_line

    assert error_line(errors.ModelLoadError("w: is a folder", arguments=("weights",))) == (
        "w: is a folder. On the command line: --weights."
    )
    assert error_line(errors.DataError("bad.npy: contains NaN")) == "bad.npy: contains NaN"
    assert error_line(errors.UntrustedCodeError("m.h5: Fix: trusted=True.")).endswith(
        "trusted=True. On the command line: --trust-model."
    )


def test_untrusted_code_keeps_its_command_line_hint(capsys, tmp_path):
    keras = _keras.keras()
    inp = keras.Input((2,))
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2, name="evil")(inp)).save(tmp_path / "m.h5")
    assert main(["inspect", str(tmp_path / "m.h5")]) == 3
    err = capsys.readouterr().err
    assert "load it with trusted=True. On the command line: --trust-model." in err


# --- module size --------------------------------------------------------------------------------------------


def test_no_module_is_longer_than_about_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, "split these along a real seam"


# --- wrapper twins ------------------------------------------------------------------------------------------

FINE = "quantized_bits(24,6,alpha=1)"
FINE_RELU = "quantized_relu(24,8)"


def _wrapper_cases():
    q, L = qkeras(), _keras.keras().layers
    fine = dict(kernel_quantizer=FINE, bias_quantizer=FINE)
    return {
        # entry -> (input shape, wrapped layer factory, the wrapped layer's float class)
        "TimeDistributed": [
            ((4, 6), lambda: L.TimeDistributed(q.QDense(5, activation=FINE_RELU, **fine)), "Dense"),
            ((2, 6, 6, 2), lambda: L.TimeDistributed(q.QConv2D(3, 3, strides=2, padding="same", **fine)), "Conv2D"),
        ],
        "Bidirectional": [
            (
                (5, 3),
                lambda: L.Bidirectional(q.QLSTM(3, activation="quantized_tanh(24)", recurrent_quantizer=FINE, **fine)),
                "LSTM",
            ),
        ],
    }


def test_every_keras_wrapper_entry_with_a_twin_has_a_case():
    from qextract.layers.registry import KERAS_LAYERS, KERAS_WRAPPERS, twin_for

    with_twin = {n for n, s in {**KERAS_LAYERS, **KERAS_WRAPPERS}.items() if s.twin is not None}
    assert with_twin == set(_wrapper_cases())
    for name in with_twin:
        assert twin_for(name).activation == "wrapper" and twin_for(name).keras_class == name


@pytest.mark.parametrize("entry, index", [(e, i) for e, cases in _wrapper_cases().items() for i in range(len(cases))])
def test_wrapper_twin_is_the_wrapper_around_the_inner_twin_and_computes_what_qkeras_approximates(entry, index):
    import zoo

    from qextract.analysis.twin import float_model
    from qextract.layers import class_spec
    from qextract.layers.registry import twin_for

    shape, factory, inner_float = _wrapper_cases()[entry][index]
    keras = _keras.keras()
    inp = keras.Input(shape)
    wrapper = factory()
    model = zoo.randomize(keras.Model(inp, wrapper(inp)), seed=index)
    assert class_spec(wrapper).twin == twin_for(entry)
    twin = float_model(model)
    fw = twin.layers[-1]
    assert type(fw).__name__ == entry and fw.name == wrapper.name
    inner = _keras.generation().attribute(fw, "layer")  # Keras 3: a Bidirectional holds it as forward_layer
    assert type(inner).__name__ == inner_float and not type(inner).__module__.startswith("qkeras")
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)  # the raw weights, unquantized
    x = np.random.default_rng(1).normal(0, 1, (3, *shape)).astype(np.float32)
    np.testing.assert_allclose(twin.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-4, atol=1e-4)
