"""Generates pstream's Kafka wire codecs from Apache Kafka's JSON message schemas.

    python tools/gen_protocol.py [SCHEMA_DIR]      # writes pstream/protocol/messages/
    python tools/gen_protocol.py --check           # exits 1 if the committed output differs

SCHEMA_DIR defaults to tools/kafka-message-schemas: the schemas of the APIs below, vendored
unchanged from Apache Kafka (see its ORIGIN.md), so a fresh clone regenerates the same output. For every API in APIS it emits one module
with a class per message (request, response) and per nested struct, plus straight-line
read/write functions per wire format: versions whose encoding is identical share a function.
Flexible versions use compact types and tagged fields; unknown tags are skipped on read.
Records stay memoryviews of the request buffer and are written as separate chunks.
"""

from __future__ import annotations

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT_DIR = os.path.join(ROOT, "pstream", "protocol", "messages")

# The APIs pstream speaks (the broker, consumer-group and transaction issues), plus the headers.
APIS = [
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
    "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake",
    "ApiVersions", "CreateTopics", "DeleteTopics", "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch",
    "DescribeConfigs", "AlterConfigs", "DescribeLogDirs", "CreatePartitions", "DeleteGroups",
    "IncrementalAlterConfigs", "OffsetDelete", "DescribeCluster", "DescribeProducers",
    "ConsumerGroupHeartbeat", "ConsumerGroupDescribe",
    "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "WriteTxnMarkers", "TxnOffsetCommit",
    "DescribeTransactions", "ListTransactions",
    "DescribeTopicPartitions", "ListPartitionReassignments", "AlterPartitionReassignments", "ElectLeaders",
    "AlterReplicaLogDirs", "DescribeQuorum", "DescribeClientQuotas", "AlterClientQuotas",
    "SaslAuthenticate", "DescribeUserScramCredentials", "AlterUserScramCredentials",
    "DescribeAcls", "CreateAcls", "DeleteAcls",
]
HEADERS = ["RequestHeader", "ResponseHeader"]
# The APIs on every client's hot path, compiled too (the request reader and the response writer
# the broker uses) into pstream/_corelib/codecs.pxi, part of pstream._core.
COMPILED_APIS = ["Produce", "Fetch"]
COMPILED_OUT = os.path.join(ROOT, "pstream", "_corelib", "codecs.pxi")

PRIMITIVES = {"int8", "int16", "int32", "int64", "uint16", "uint32", "float64", "bool", "uuid",
              "string", "bytes", "records"}
FIXED_READ = {"int8": "r.int8()", "int16": "r.int16()", "int32": "r.int32()", "int64": "r.int64()",
              "uint16": "r.uint16()", "uint32": "r.uint32()", "float64": "r.float64()", "bool": "r.bool()",
              "uuid": "r.uuid()"}


def load_schema(path: str) -> dict:
    with open(path) as f:
        text = "\n".join(re.sub(r"^\s*//.*$", "", line) for line in f)
    return json.loads(text)


class Versions:
    """A Kafka version range: "3+", "0-5", "2", "none"."""

    def __init__(self, spec: str | None):
        spec = (spec or "none").strip()
        if spec == "none":
            self.lo, self.hi = 1, 0
        elif spec.endswith("+"):
            self.lo, self.hi = int(spec[:-1]), 1 << 15
        elif "-" in spec:
            lo, hi = spec.split("-")
            self.lo, self.hi = int(lo), int(hi)
        else:
            self.lo = self.hi = int(spec)

    def __contains__(self, version: int) -> bool:
        return self.lo <= version <= self.hi


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


class Field:
    def __init__(self, spec: dict, structs: dict):
        self.name = spec["name"]
        self.attr = snake(self.name)
        self.type = spec["type"]
        self.versions = Versions(spec.get("versions"))
        self.nullable = Versions(spec.get("nullableVersions"))
        self.tagged = Versions(spec.get("taggedVersions"))
        self.tag = spec.get("tag")
        self.flexible_override = Versions(spec["flexibleVersions"]) if "flexibleVersions" in spec else None
        self.default = spec.get("default")
        self.is_array = self.type.startswith("[]")
        self.elem = self.type[2:] if self.is_array else self.type
        self.struct = None
        if self.elem not in PRIMITIVES:
            if "fields" in spec:
                structs[self.elem] = Struct(self.elem, spec["fields"], structs)
            self.struct = self.elem

    def default_expr(self) -> str:
        if self.is_array:
            return "None" if self.default == "null" else "[]"
        if self.struct is not None:
            return "None"
        d = self.default
        if d == "null":
            return "None"
        if self.elem in ("int8", "int16", "int32", "int64", "uint16", "uint32"):
            if d is None or d == "":
                return "0"
            return str(int(d, 16) if isinstance(d, str) and d.lower().startswith("0x") else int(d))
        if self.elem == "float64":
            return repr(float(d)) if d not in (None, "") else "0.0"
        if self.elem == "bool":
            return "True" if str(d).lower() == "true" else "False"
        if self.elem == "string":
            return repr(d if isinstance(d, str) else "")
        if self.elem == "uuid":
            return "ZERO_UUID"
        return "None" if self.elem == "records" else 'b""'


class Struct:
    def __init__(self, name: str, fields: list, structs: dict):
        self.name = name
        self.fields = [Field(f, structs) for f in fields]


class Emitter:
    """Writes one module: classes, then deduplicated read/write functions. `cython`: the
    same functions as cdef functions on WireReader/WireWriter (the compiled back end), with
    array loops over C ranges."""

    def __init__(self, structs: dict, qual: dict, cython: bool = False):
        self.structs = structs
        self.qual = qual              # struct name -> qualified class name
        self.cython = cython
        self.funcs: dict[str, str] = {}   # body -> function name
        self.out: list[str] = []
        self.counter: dict[str, int] = {}

    def _intern(self, kind: str, struct: str, body: list[str]) -> str:
        text = "\n".join(body)
        if text in self.funcs:
            return self.funcs[text]
        # Named by the owning message too: a request and its response may both have a struct "Topic".
        label = self.qual[struct].lstrip("_").replace(".", "_")
        n = self.counter.get(kind + label, 0)
        self.counter[kind + label] = n + 1
        name = f"_{kind}_{label}_{n}"
        if self.cython:
            name = "_c" + name
        self.funcs[text] = name
        self.out.append(text.replace("@NAME@", name))
        return name

    def fields_of(self, struct: str, version: int, flexible: bool) -> tuple[list[Field], list[Field]]:
        """(fields in order, tagged fields) of a struct at one version."""
        present = [f for f in self.structs[struct].fields if version in f.versions]
        tagged = [f for f in present if flexible and version in f.tagged]
        return [f for f in present if f not in tagged], tagged

    # --- reading ---------------------------------------------------------------------

    def read_value(self, f: Field, version: int, flexible: bool) -> str:
        compact = flexible and not (f.flexible_override is not None and version not in f.flexible_override)
        nullable = version in f.nullable
        if f.is_array:
            n = "r.carray_len()" if compact else "r.array_len()"
            item = self.read_scalar(f, version, flexible, compact, False)
            if nullable:
                return f"(None if (n := {n}) < 0 else [{item} for _ in {self.count('n')}])"
            return f"[{item} for _ in {self.count(n)}]"
        return self.read_scalar(f, version, flexible, compact, nullable)

    def read_scalar(self, f: Field, version: int, flexible: bool, compact: bool, nullable: bool) -> str:
        t = f.elem
        if f.struct is not None:
            fn = self.reader(f.struct, version, flexible)
            return f"(None if r.int8() < 0 else {fn}(r))" if nullable else f"{fn}(r)"
        if t in FIXED_READ:
            return FIXED_READ[t]
        kind = "string" if t == "string" else "bytes"
        return f"r.{'n' if nullable else ''}{'c' if compact else ''}{kind}()"

    def count(self, n: str) -> str:
        return f"range(r.checked_count({n}))" if self.cython else f"r.count({n})"

    def reader(self, struct: str, version: int, flexible: bool) -> str:
        head = "cdef object @NAME@(WireReader r):" if self.cython else "def @NAME@(r):"
        body = [head, f"    o = {self.qual[struct]}()"]
        plain, tagged = self.fields_of(struct, version, flexible)
        for f in plain:
            body.append(f"    o.{f.attr} = {self.read_value(f, version, flexible)}")
        if flexible:
            if tagged:
                body.append("    for tag, size in r.tags():")
                for i, f in enumerate(tagged):
                    body.append(f"        {'if' if i == 0 else 'elif'} tag == {f.tag}:")
                    body.append(f"            o.{f.attr} = {self.read_value(f, version, True)}")
                body.append("        else:")
                body.append("            r.skip(size)")
            else:
                body.append("    r.skip_tags()")
        body.append("    return o")
        return self._intern("read", struct, body)

    # --- writing ---------------------------------------------------------------------

    def write_value(self, f: Field, expr: str, version: int, flexible: bool, indent: str, w: str) -> list[str]:
        compact = flexible and not (f.flexible_override is not None and version not in f.flexible_override)
        nullable = version in f.nullable
        if not f.is_array:
            return self.write_scalar(f, expr, version, flexible, compact, nullable, indent, w)
        n = f"{w}.carray_len" if compact else f"{w}.array_len"
        lines = []
        inner = indent
        if nullable:
            lines += [f"{indent}if {expr} is None:", f"{indent}    {n}(-1)", f"{indent}else:"]
            inner = indent + "    "
        lines.append(f"{inner}{n}(len({expr}))")
        lines.append(f"{inner}for x in {expr}:")
        lines += self.write_scalar(f, "x", version, flexible, compact, False, inner + "    ", w)
        return lines

    def write_scalar(self, f: Field, expr: str, version: int, flexible: bool, compact: bool, nullable: bool,
                     indent: str, w: str) -> list[str]:
        t = f.elem
        if f.struct is not None:
            fn = self.writer(f.struct, version, flexible)
            if nullable:
                return [f"{indent}if {expr} is None:", f"{indent}    {w}.int8(-1)", f"{indent}else:",
                        f"{indent}    {w}.int8(1)", f"{indent}    {fn}({w}, {expr})"]
            # An absent (None) struct is written as the struct of defaults.
            return [f"{indent}{fn}({w}, {self.qual[f.struct]}() if {expr} is None else {expr})"]
        if t in FIXED_READ:
            return [f"{indent}{w}.{t}({expr})"]
        return [f"{indent}{w}.{'n' if nullable else ''}{'c' if compact else ''}{t}({expr})"]

    def writer(self, struct: str, version: int, flexible: bool) -> str:
        body = ["cdef object @NAME@(WireWriter w, o):" if self.cython else "def @NAME@(w, o):"]
        plain, tagged = self.fields_of(struct, version, flexible)
        for f in plain:
            body += self.write_value(f, f"o.{f.attr}", version, flexible, "    ", "w")
        if flexible:
            if tagged:
                body.append("    tags = []")
                for f in sorted(tagged, key=lambda f: f.tag):
                    body.append(f"    if o.{f.attr} != {f.default_expr()}:")
                    body.append("        t = w.sub()")
                    body += self.write_value(f, f"o.{f.attr}", version, True, "        ", "t")
                    body.append(f"        tags.append(({f.tag}, t))")
                body.append("    w.tags(tags)")
            else:
                body.append("    w.uvarint(0)")
        if len(body) == 1:
            body.append("    pass")
        return self._intern("write", struct, body)


def emit_class(name: str, s: Struct, nested: list[tuple[str, Struct]], indent: str = "") -> list[str]:
    lines = [f"{indent}class {name}(Message):"]
    attrs = [f.attr for f in s.fields]
    lines.append(f"{indent}    __slots__ = ({', '.join(repr(a) for a in attrs)}{',' if len(attrs) == 1 else ''})")
    for nname, ns in nested:
        lines.append("")
        lines += emit_class(nname, ns, [], indent + "    ")
    lines.append("")
    # Arrays default to a fresh [] each time; UNSET (not None) marks "not given", since None is a
    # meaningful value of a nullable array (MetadataRequest topics=None: all topics).
    params = ", ".join(f"{f.attr}={f.default_expr() if f.default_expr() != '[]' else 'UNSET'}" for f in s.fields)
    lines.append(f"{indent}    def __init__(self{', ' if params else ''}{params}):")
    if not s.fields:
        lines.append(f"{indent}        pass")
    for f in s.fields:
        if f.default_expr() == "[]":
            lines.append(f"{indent}        self.{f.attr} = [] if {f.attr} is UNSET else {f.attr}")
        else:
            lines.append(f"{indent}        self.{f.attr} = {f.attr}")
    return lines


def generate_module(api: str, schema_dir: str) -> tuple[str, dict]:
    schemas = []
    for kind in (["Request", "Response"] if api not in HEADERS else [""]):
        schemas.append(load_schema(os.path.join(schema_dir, f"{api}{kind}.json")))
    body: list[str] = []
    classes: list[str] = []
    info = {}
    for schema in schemas:
        name = schema["name"]
        structs: dict[str, Struct] = {}
        for common in schema.get("commonStructs", []):
            structs[common["name"]] = Struct(common["name"], common["fields"], structs)
        top = Struct(name, schema["fields"], structs)
        structs[name] = top
        qual = {sname: (name if sname == name else f"{name}.{sname}") for sname in structs}
        nested = [(sname, s) for sname, s in structs.items() if sname != name]
        classes += emit_class(name, top, nested) + ["", ""]
        valid = Versions(schema["validVersions"])
        flexible = Versions(schema.get("flexibleVersions"))
        emitter = Emitter(structs, qual)
        readers, writers = [], []
        for v in range(valid.lo, valid.hi + 1):
            readers.append(emitter.reader(name, v, v in flexible))
            writers.append(emitter.writer(name, v, v in flexible))
        body += [text + "\n" for text in emitter.out]
        body.append(f"{name}.READERS = ({', '.join(readers)},)")
        body.append(f"{name}.WRITERS = ({', '.join(writers)},)")
        body.append(f"{name}.MIN_VERSION = {valid.lo}")
        body.append(f"{name}.MAX_VERSION = {valid.hi}")
        body.append(f"{name}.FLEXIBLE_FROM = {flexible.lo if flexible.lo <= flexible.hi else 'None'}")
        body.append("\n")
        info[name] = {"api_key": schema.get("apiKey"), "valid": (valid.lo, valid.hi),
                      "flexible_from": flexible.lo if flexible.lo <= flexible.hi else None}
    head = [
        f'"""Kafka {api} wire codec. GENERATED by tools/gen_protocol.py from {api}*.json of',
        f'Apache Kafka\'s message schemas ({os.path.basename(schema_dir)}). Do not edit: rerun the generator."""',
        "",
        "from pstream.protocol.primitives import UNSET, ZERO_UUID, Message  # noqa: F401",
        "",
        "",
    ]
    text = "\n".join(head + classes + body).rstrip() + "\n"
    text = re.sub(r"\n{3,}(?=\S)", "\n\n\n", text)
    return text, info


def _version_dispatch(kind: str, name: str, functions: list[str], lo: int, args: str) -> list[str]:
    """A def function choosing the compiled function of a version (runs of versions share one)."""
    sig = "int version, WireReader r" if kind == "read" else "int version, WireWriter w, o"
    lines = [f"def _{kind}_{name}({sig}):"]
    start = 0
    for i in range(1, len(functions) + 1):
        if i == len(functions) or functions[i] != functions[start]:
            first, last = lo + start, lo + i - 1
            cond = f"version == {first}" if first == last else f"{first} <= version <= {last}"
            lines.append(f"    if {cond}:")
            lines.append(f"        return {functions[start]}({args})")
            start = i
    lines.append(f"    raise ValueError(f\"{name} has no version {{version}}\")")
    return lines


def generate_compiled(schema_dir: str) -> str:
    """The Cython back end: for each of COMPILED_APIS, the request's readers and the response's
    writers as cdef functions over WireReader/WireWriter, building the same message classes as
    the Python modules, and one def per message that picks the function for a version."""
    imports, body, table = [], [], []
    for api in COMPILED_APIS:
        # Private names: everything at the top of a .pxi is an attribute of pstream._core.
        imports.append(f"from pstream.protocol.messages.{module_name(api)} import {api}Request as _{api}Request, "
                       f"{api}Response as _{api}Response")
        for kind, role in (("Request", "read"), ("Response", "write")):
            schema = load_schema(os.path.join(schema_dir, f"{api}{kind}.json"))
            name = schema["name"]
            structs: dict[str, Struct] = {}
            for common in schema.get("commonStructs", []):
                structs[common["name"]] = Struct(common["name"], common["fields"], structs)
            structs[name] = Struct(name, schema["fields"], structs)
            qual = {sname: (f"_{name}" if sname == name else f"_{name}.{sname}") for sname in structs}
            valid = Versions(schema["validVersions"])
            flexible = Versions(schema.get("flexibleVersions"))
            emitter = Emitter(structs, qual, cython=True)
            make = emitter.reader if role == "read" else emitter.writer
            functions = [make(name, v, v in flexible) for v in range(valid.lo, valid.hi + 1)]
            body += [re.sub(r"\bZERO_UUID\b", "_ZERO_UUID", text) + "\n" for text in emitter.out]
            body += _version_dispatch(role, name, functions, valid.lo, "r" if role == "read" else "w, o") + ["\n"]
            table.append(f"    {name!r}: _{role}_{name},")
    head = [
        "# Compiled Kafka codecs of the hot APIs. GENERATED by tools/gen_protocol.py (its Cython back end)",
        "# from Apache Kafka's message schemas; included by pstream/_core.pyx. Do not edit: rerun the generator.",
        "# Same functions as pstream/protocol/messages/, as cdef functions over WireReader and WireWriter.",
        "",
        *imports,
        "from pstream.protocol.primitives import ZERO_UUID as _ZERO_UUID",
        "",
        "",
    ]
    tail = ["# message name -> _read_<Request>(version, reader) or _write_<Response>(version, writer, message)",
            "COMPILED_CODECS = {", *table, "}"]
    text = "\n".join(head + body + tail).rstrip() + "\n"
    return re.sub(r"\n{3,}(?=\S)", "\n\n\n", text)


def module_name(api: str) -> str:
    return snake(api)


def generate(schema_dir: str) -> dict[str, str]:
    files = {}
    index = []
    for api in HEADERS + APIS:
        text, info = generate_module(api, schema_dir)
        files[f"{module_name(api)}.py"] = text
        if api not in HEADERS:
            req = info[f"{api}Request"]
            index.append((req["api_key"], api, req["valid"], req["flexible_from"]))
    lines = [
        '"""Index of the generated Kafka codecs. GENERATED by tools/gen_protocol.py. Do not edit."""',
        "",
        "# api key -> (name, module, (min, max) version in the schemas, first flexible version)",
        "API_INDEX = {",
    ]
    for key, api, valid, flex in sorted(index):
        lines.append(f"    {key}: ({api!r}, {module_name(api)!r}, {valid!r}, {flex!r}),")
    lines.append("}")
    files["__init__.py"] = "\n".join(lines) + "\n"
    return files


def default_schema_dir() -> str:
    return os.path.join(HERE, "kafka-message-schemas")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    schema_dir = args[0] if args else default_schema_dir()
    files = generate(schema_dir)
    compiled = generate_compiled(schema_dir)
    if check:
        stale = []
        if not os.path.exists(COMPILED_OUT) or open(COMPILED_OUT).read() != compiled:
            stale.append(os.path.relpath(COMPILED_OUT, ROOT))
        for name, text in files.items():
            path = os.path.join(OUT_DIR, name)
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(name)
        extra = set(os.listdir(OUT_DIR)) - set(files) - {"__pycache__"} if os.path.isdir(OUT_DIR) else set()
        if stale or extra:
            print(f"generated codecs are stale: {', '.join(sorted(stale + list(extra)))}; "
                  f"run python tools/gen_protocol.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(OUT_DIR, name), "w") as f:
            f.write(text)
    with open(COMPILED_OUT, "w") as f:
        f.write(compiled)
    print(f"wrote {len(files)} modules to {os.path.relpath(OUT_DIR, ROOT)} and {os.path.relpath(COMPILED_OUT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
