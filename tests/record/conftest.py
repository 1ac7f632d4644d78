"""Fixtures shared by the record tests.

`codec` is the batch codec under test. Round-trip, validation and golden-client tests
take it, so one test body checks every implementation against the same expectations;
the pure-Python reference is the oracle the others are compared with.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

# Codec implementation name -> module providing encode_batch, decode_batch,
# validate_batch and crc32c.
CODEC_MODULES = {
    "reference": "pstream.record.reference",
    "fast": "pstream._core",
}


@pytest.fixture(params=["reference", "fast"], scope="session")
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """The batch codec implementation under test (a module)."""
    return importlib.import_module(CODEC_MODULES[request.param])
