"""The generated codecs are what tools/gen_protocol.py makes from the vendored schemas, and
they agree with the schema JSON (read here independently of the generator)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import subprocess
import sys
import uuid

import pytest


import _support as S  # noqa: E402  (tests/protocol is on sys.path: see conftest.py)
ROOT = pathlib.Path(__file__).resolve().parents[2]
MESSAGES_DIR = ROOT / "pstream" / "protocol" / "messages"

from pstream.protocol.messages import API_INDEX


def test_schemas_are_vendored_next_to_the_generator():
    # A fresh clone has no ../shared: the generator must find its input inside the repo.
    assert S.SCHEMA_DIR.is_dir(), f"{S.SCHEMA_DIR} is missing: the generator has no input on a fresh clone"
    for name in S.all_message_names():
        assert (S.SCHEMA_DIR / f"{name}.json").is_file(), f"{name}.json not vendored in {S.SCHEMA_DIR}"


def test_rerunning_the_generator_reproduces_the_committed_output():
    proc = subprocess.run([sys.executable, "tools/gen_protocol.py", "--check"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"gen_protocol.py --check failed:\n{proc.stdout}\n{proc.stderr}"


def test_generated_modules_cover_every_api_in_the_index():
    for key, (api, module, valid, flexible_from) in API_INDEX.items():
        mod = importlib.import_module(f"pstream.protocol.messages.{module}")
        req = S.schema(f"{api}Request")
        resp = S.schema(f"{api}Response")
        assert req["apiKey"] == key and resp["apiKey"] == key, api
        assert valid == (S.Versions(req["validVersions"]).lo, S.Versions(req["validVersions"]).hi), api
        assert flexible_from == S.Versions(req.get("flexibleVersions")).first, api
        assert hasattr(mod, f"{api}Request") and hasattr(mod, f"{api}Response"), api


@pytest.mark.parametrize("name", S.all_message_names())
def test_message_versions_match_the_schema(name):
    spec = S.schema(name)
    cls = S.message_class(name)
    valid = S.Versions(spec["validVersions"])
    assert (cls.MIN_VERSION, cls.MAX_VERSION) == (valid.lo, valid.hi)
    assert cls.FLEXIBLE_FROM == S.Versions(spec.get("flexibleVersions")).first
    n = valid.hi - valid.lo + 1
    assert len(cls.READERS) == n and len(cls.WRITERS) == n
    assert all(callable(f) for f in cls.READERS + cls.WRITERS)


def _schema_default(field: dict):
    """The value Kafka gives a field that is absent from a version (struct fields excluded)."""
    t, d = field["type"], field.get("default")
    if d == "null":
        return None
    if t.startswith("[]"):
        return []
    if t in S.INT_RANGES:
        if d is None or d == "":
            return 0
        if isinstance(d, str) and d.lower().startswith("0x"):
            return int(d, 16)
        return int(d)
    if t == "bool":
        return d is not None and str(d).lower() == "true"
    if t == "float64":
        return 0.0 if d in (None, "") else float(d)
    if t == "string":
        return "" if d is None else d
    if t == "bytes":
        return b""
    if t == "records":
        return None
    if t == "uuid":
        return uuid.UUID(int=0)
    return NotImplemented   # a struct


@pytest.mark.parametrize("name", S.all_message_names())
def test_constructor_defaults_match_the_schema_defaults(name):
    # Fields absent from a version decode to these defaults, so they must be Kafka's.
    spec = S.schema(name)
    top = S.message_class(name)
    structs = S._structs(spec)
    structs[name] = spec["fields"]
    for sname, fields in structs.items():
        obj = (top if sname == name else getattr(top, sname))()
        for f in fields:
            expected = _schema_default(f)
            if expected is NotImplemented:
                continue
            got = S.normal(getattr(obj, S.snake(f["name"])))
            assert got == expected and type(got) is type(expected), (
                f"{sname}.{f['name']}: {got!r} != {expected!r}")


@pytest.mark.parametrize("path", sorted(p.name for p in MESSAGES_DIR.glob("*.py")))
def test_generated_module_defines_each_function_once(path):
    # Module-level functions are looked up by name when called: a second definition with the
    # same name silently replaces the first for every earlier caller (e.g. a request's nested
    # struct reader replaced by the response's struct of the same name).
    tree = ast.parse((MESSAGES_DIR / path).read_text())
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"{path} defines {dupes} more than once"
