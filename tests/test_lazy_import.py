"""`import qextract` loads its public names on first use (PEP 562): each must resolve however a user reaches it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import qextract


@pytest.mark.parametrize("name", qextract.__all__)
def test_every_public_name_is_the_object_of_its_module(name):
    module = importlib.import_module(f"qextract.{qextract._WHERE[name]}")
    assert getattr(qextract, name) is getattr(module, name)
    assert name in dir(qextract)


def test_the_table_of_places_and_all_agree():
    assert sorted(qextract._WHERE) == sorted(qextract.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        qextract.nope  # noqa: B018


def test_star_import_and_version_in_a_fresh_session_load_no_pandas_until_asked(tmp_path):
    code = (
        "import sys; import qextract; before = 'pandas' in sys.modules; "
        "from qextract import *; from qextract import __version__; "
        "print(before, callable(extract), isinstance(__version__, str), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split() == ["False", "True", "True", "False"], out.stdout + out.stderr
