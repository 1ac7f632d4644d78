"""pstream/_core.pyi types what the compiled core really has: no name missing, none stale."""

from __future__ import annotations

import ast
import inspect
import os

import pstream
from pstream import _core

STUB = os.path.join(os.path.dirname(pstream.__file__), "_core.pyi")
DUNDERS = {"__init__", "__iter__", "__len__", "__enter__", "__exit__"}


def _stub() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(open(STUB).read())
    names, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign):
                    members.add(item.target.id)
            classes[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return names, classes


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_") or n in DUNDERS}


def test_the_stub_names_every_public_name_of_the_core_and_no_other():
    names, _ = _stub()
    module = {n for n in dir(_core) if not n.startswith("_") and not inspect.ismodule(getattr(_core, n))}
    assert module - names == set(), "in the core but not typed in _core.pyi"
    assert names - module - {"Buffer", "HeaderList", "RecordTuple"} == set(), "typed in _core.pyi but not in the core"


def test_the_stub_types_every_public_member_of_each_class():
    _, classes = _stub()
    for name, members in classes.items():
        cls = getattr(_core, name)
        real = _public(vars(cls)) - {"__reduce__", "__setstate__", "__reduce_cython__", "__setstate_cython__"}
        if name == "BatchBuilder":
            continue   # no Python-visible members
        assert real - members == set(), f"{name}: members not typed"
        assert members - real - DUNDERS == set(), f"{name}: typed members it does not have"


def test_the_package_is_marked_typed():
    assert os.path.exists(os.path.join(os.path.dirname(pstream.__file__), "py.typed"))
