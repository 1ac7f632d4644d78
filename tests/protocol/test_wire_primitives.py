"""The compiled wire primitives (pstream._core.WireReader and WireWriter, which the broker
uses) pass every test of test_primitives.py: its source is run again here with them in
place of the Python reference's Reader and Writer, so one set of cases checks both."""

from __future__ import annotations

import pathlib

_REFERENCE = pathlib.Path(__file__).with_name("test_primitives.py")
_IMPORT = "from pstream.protocol.primitives import ProtocolError, Reader, Writer"
_source = _REFERENCE.read_text()
if _IMPORT not in _source:
    raise RuntimeError(f"{_REFERENCE.name} no longer imports its primitives as {_IMPORT!r}")
_source = _source.replace(_IMPORT, "from pstream.protocol.primitives import ProtocolError\n"
                                   "from pstream._core import WireReader as Reader, WireWriter as Writer")
exec(compile(_source, str(_REFERENCE), "exec"), globals())


def test_the_compiled_primitives_are_the_ones_tested():
    assert Reader.__module__ == "pstream._core" and Writer.__module__ == "pstream._core"  # noqa: F821
