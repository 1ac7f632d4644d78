"""Shared helpers for the protocol tests: the schema JSON (read independently of the
generator), version ranges, random message instances built from the schema, and a
normal form for comparing decoded messages.

Loaded by the test files through ``load_support()`` in conftest-free style (the suite runs
with --import-mode=importlib, so this directory is not on sys.path).
"""

from __future__ import annotations

import functools
import importlib
import json
import pathlib
import re
import uuid

from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The directory the generator reads by default (tools/gen_protocol.py: default_schema_dir).
SCHEMA_DIR = ROOT / "tools" / "kafka-message-schemas"
HEADERS = ("RequestHeader", "ResponseHeader")
ZERO_UUID = uuid.UUID(int=0)


def load_schema_file(path: pathlib.Path) -> dict:
    """Kafka's schema JSON with its ``//`` comment lines stripped."""
    text = "\n".join("" if line.lstrip().startswith("//") else line for line in path.read_text().splitlines())
    return json.loads(text)


@functools.cache
def schema(name: str) -> dict:
    """The schema of a message by name (e.g. 'ProduceRequest'); fails if missing."""
    path = SCHEMA_DIR / f"{name}.json"
    if not path.is_file():
        raise AssertionError(f"schema {path} not found: the vendored Kafka schemas are missing")
    return load_schema_file(path)


class Versions:
    """A Kafka version range: '3+', '0-5', '2', 'none' (or absent)."""

    def __init__(self, spec: str | None):
        spec = (spec or "none").strip()
        if spec == "none":
            self.lo, self.hi = 1, 0
        elif spec.endswith("+"):
            self.lo, self.hi = int(spec[:-1]), 32767
        elif "-" in spec:
            lo, hi = spec.split("-")
            self.lo, self.hi = int(lo), int(hi)
        else:
            self.lo = self.hi = int(spec)

    def __contains__(self, v: int) -> bool:
        return self.lo <= v <= self.hi

    def __iter__(self):
        return iter(range(self.lo, self.hi + 1))

    @property
    def first(self):
        return self.lo if self.lo <= self.hi else None


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def module_name(api: str) -> str:
    return snake(api)


def message_class(name: str):
    """The generated class for a message name, e.g. 'ProduceRequest'."""
    if name in HEADERS:
        mod = importlib.import_module(f"pstream.protocol.messages.{snake(name)}")
    else:
        api = re.sub(r"(Request|Response)$", "", name)
        mod = importlib.import_module(f"pstream.protocol.messages.{module_name(api)}")
    return getattr(mod, name)


def all_message_names() -> list[str]:
    from pstream.protocol.messages import API_INDEX

    names = list(HEADERS)
    for _key, (api, _mod, _valid, _flex) in sorted(API_INDEX.items()):
        names += [f"{api}Request", f"{api}Response"]
    return names


def all_message_versions() -> list[tuple[str, int]]:
    """(message name, version) for every version the schema JSON declares valid."""
    out = []
    for name in all_message_names():
        for v in Versions(schema(name)["validVersions"]):
            out.append((name, v))
    return out


def read(cls, version: int, data):
    from pstream.protocol.primitives import Reader

    r = Reader(data)
    obj = cls.READERS[version - cls.MIN_VERSION](r)
    return obj, r


def write(cls, version: int, obj) -> bytes:
    from pstream.protocol.primitives import Writer

    w = Writer()
    cls.WRITERS[version - cls.MIN_VERSION](w, obj)
    return w.getvalue()


def normal(value):
    """A comparable plain-Python form: messages become (class, {field: value}), memoryviews
    bytes. The class is kept so that a nested struct of the wrong class is a difference."""
    from pstream.protocol.primitives import Message

    if isinstance(value, Message):
        return (type(value).__qualname__, {a: normal(getattr(value, a)) for a in type(value).__slots__})
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [normal(x) for x in value]
    return value


# --- random instances from the schema ------------------------------------------------

INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
}
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
# Short byte strings, and now and then one past the Writer's 512-byte chunk threshold.
BLOB = st.one_of(st.binary(max_size=12), st.binary(min_size=512, max_size=530))


def _structs(spec: dict) -> dict[str, list]:
    """struct type name -> its field list, for inline and common structs."""
    out = {c["name"]: c["fields"] for c in spec.get("commonStructs", [])}

    def walk(fields):
        for f in fields:
            if "fields" in f:
                out[f["type"].removeprefix("[]")] = f["fields"]
                walk(f["fields"])

    walk(spec["fields"])
    for c in spec.get("commonStructs", []):
        walk(c["fields"])
    return out


def _scalar(t: str, ctx, version: int):
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.integers(lo, hi)
    if t == "float64":
        return st.floats(allow_nan=False)
    if t == "bool":
        return st.booleans()
    if t == "uuid":
        return st.one_of(st.just(ZERO_UUID), st.uuids())
    if t == "string":
        return TEXT
    if t in ("bytes", "records"):
        return BLOB
    return _struct_strategy(t, ctx, version)


def _field_strategy(f: dict, ctx, version: int):
    t = f["type"]
    if t.startswith("[]"):
        base = st.lists(_scalar(t[2:], ctx, version), max_size=3)
    else:
        base = _scalar(t, ctx, version)
    if version in Versions(f.get("nullableVersions")):
        base = st.one_of(st.none(), base)
    return base


def _struct_strategy(type_name: str, ctx, version: int):
    top_cls, structs, flexible = ctx
    cls = top_cls if type_name == top_cls.__name__ else getattr(top_cls, type_name)
    fields = structs[type_name]
    present = [f for f in fields if version in Versions(f.get("versions"))]
    defaults = cls()
    parts = {}
    for f in present:
        s = _field_strategy(f, ctx, version)
        if flexible and version in Versions(f.get("taggedVersions")):
            # A tagged field at its default is left out on the wire: draw it often.
            s = st.one_of(st.just(getattr(defaults, snake(f["name"]))), s)
        parts[snake(f["name"])] = s

    @st.composite
    def build(draw):
        obj = cls()
        for attr, s in parts.items():
            setattr(obj, attr, draw(s))
        return obj

    return build()


@functools.cache
def instance_strategy(name: str, version: int):
    """Random instances of message `name` at `version`: every field the version encodes is
    drawn from its type (None only where nullable); the others keep their defaults."""
    spec = schema(name)
    cls = message_class(name)
    structs = _structs(spec)
    structs[spec["name"]] = spec["fields"]
    flexible = version in Versions(spec.get("flexibleVersions"))
    return _struct_strategy(spec["name"], (cls, structs, flexible), version)
