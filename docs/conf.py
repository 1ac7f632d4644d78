"""Sphinx configuration: the API reference is built from the docstrings of the installed
package; the CLI and settings references are generated here from the code that defines them
(pstream/cli, pstream/broker/config.py), so none of them can drift from what pstream does.
tests/docs/test_docs.py builds this with warnings as errors."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

import pstream

project = "pstream"
release = version = pstream.__version__
extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.txt"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
suppress_warnings = ["myst.header"]
nitpicky = False

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = os.path.join(HERE, "_generated")


def _cli_reference() -> str:
    from pstream.cli.main import build_parser
    parser = build_parser()
    out = [parser.format_help()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        out.append(command.format_help())
        nested = [a for a in command._actions if a.__class__.__name__ == "_SubParsersAction"]
        for action in nested:
            out.extend(p.format_help() for p in action.choices.values())
    return "\n\n".join(out)


def _settings_reference() -> str:
    from pstream.broker import config
    rows = []
    for s in config._SETTINGS:
        env = "PSTREAM_" + s.name.upper()
        flag = "--" + s.name.replace("_", "-")
        default = config._default_text(s)
        rows.append(f"   * - ``{s.name}``\n     - ``{flag}``, ``{env}``{', ``' + s.kafka + '``' if s.kafka else ''}\n"
                    f"     - {'``' + default + '``' if default not in (None, '') else '(none)'}\n     - {s.help}")
    return ("Settings\n========\n\nEvery setting of ``pstream serve`` and ``pstream.serve(log, ...)``: its TOML key, flag,\n"
            "environment variable and Kafka name, default and meaning (generated from\n"
            "``pstream/broker/config.py``).\n\n.. list-table::\n   :header-rows: 1\n   :widths: 20 30 15 35\n\n"
            "   * - Setting\n     - Flag, environment, Kafka name\n     - Default\n     - Meaning\n" + "\n".join(rows) + "\n")


def _write(name: str, text: str) -> None:
    os.makedirs(GENERATED, exist_ok=True)
    path = os.path.join(GENERATED, name)
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
        with open(path, "w") as f:
            f.write(text)


with redirect_stdout(io.StringIO()):
    os.environ.setdefault("COLUMNS", "100")
    _write("cli.txt", _cli_reference())
    _write("settings.rst", _settings_reference())


def _docstring_as_written(app, what, name, obj, options, lines):
    """pstream's docstrings are plain text (aligned columns, `code`, Kafka's names), not reST:
    they are shown as written, in a literal block, rather than parsed."""
    if lines:
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _docstring_as_written)
