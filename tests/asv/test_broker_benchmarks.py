"""The asv suite (asv_bench/benchmarks) still loads, and every broker benchmark runs: its
setup, each of its time_/track_ methods once, its teardown, for every parameter.

A smoke test, not a benchmark: nothing here is timed or compared, so a broken benchmark
fails CI instead of the next `asv continuous`. The other modules are only imported (their
setups write hundreds of MiB).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys

import pytest

import pstream  # noqa: F401  (imported first: loading the suite must not change which pstream runs)

SUITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "asv_bench", "benchmarks")
PACKAGE = "pstream_asv_benchmarks"


def _suite():
    """asv_bench/benchmarks as a package of its own name (its modules import each other
    relatively), loaded once; sys.path is left as it was."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(SUITE, "__init__.py"),
                                                      submodule_search_locations=[SUITE])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    finally:
        sys.path[:] = saved
    return package


def _module(name: str):
    _suite()
    return importlib.import_module(f"{PACKAGE}.{name}")


MODULES = sorted(f[:-3] for f in os.listdir(SUITE) if f.endswith(".py") and f != "__init__.py")
BENCHMARK_PREFIXES = ("time_", "track_", "peakmem_", "mem_", "timeraw_")


def _benchmark_classes(module):
    return [obj for name, obj in vars(module).items()
            if isinstance(obj, type) and obj.__module__ == module.__name__ and not name.startswith("_")
            and any(attr.startswith(BENCHMARK_PREFIXES) for attr in dir(obj))]


def _param_sets(cls):
    params = getattr(cls, "params", None)
    if params is None:
        return [()]
    if not params or not isinstance(params[0], (list, tuple)):
        params = [params]   # asv's shorthand for one parameter
    return list(itertools.product(*params))


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name):
    module = _module(name)
    if name != "common":
        assert _benchmark_classes(module), f"asv would find no benchmark in {name}.py"


# asv reads these attributes of a benchmark class as its own settings; a benchmark's own
# counter under one of these names changes how asv runs the whole suite (rounds=200 made
# `asv continuous` interleave 200 rounds, reinstalling each commit 100 times).
ASV_LIMITS = {"rounds": 4, "repeat": 50, "number": 10_000, "warmup_time": 5, "sample_time": 5,
              "min_run_count": 10, "processes": 4}


@pytest.mark.parametrize("name", [m for m in MODULES if m != "common"])
def test_no_benchmark_sets_asv_run_settings_out_of_range(name):
    for cls in _benchmark_classes(_module(name)):
        for attr, limit in ASV_LIMITS.items():
            value = getattr(cls, attr, None)
            if value is None:
                continue
            if attr == "repeat" and isinstance(value, (tuple, list)):
                value = value[1]   # (min_repeat, max_repeat, max_time)
            assert isinstance(value, (int, float)) and value <= limit, \
                f"{name}.{cls.__name__}.{attr} = {value!r}: asv reads it as its own setting"


BROKER_MODULES = ("broker", "request_path")   # the broker's request path, in process and over TCP
BROKER_CASES = [(module, cls.__name__, params) for module in BROKER_MODULES
                for cls in _benchmark_classes(_module(module)) for params in _param_sets(cls)]


@pytest.mark.parametrize(("module", "cls_name", "params"), BROKER_CASES,
                         ids=[f"{m}.{c}-{'-'.join(map(str, p)) or 'none'}" for m, c, p in BROKER_CASES])
def test_broker_benchmark_runs_once(module, cls_name, params):
    cls = getattr(_module(module), cls_name)
    bench = cls()
    assert not hasattr(bench, "setup_cache"), "a setup_cache would need its result passed here"
    bench.setup(*params)
    try:
        methods = sorted(m for m in dir(bench) if m.startswith(BENCHMARK_PREFIXES))
        assert methods
        for method in methods:
            result = getattr(bench, method)(*params)
            if method.startswith("track_"):
                assert isinstance(result, (int, float)) and result > 0, f"{method} returned {result!r}"
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*params)


def test_broker_benchmarks_leave_no_broker_or_directory_behind():
    bench = _module("broker").RoundTrip()
    bench.setup()
    process, folder = bench.broker.proc, bench.folder
    assert os.path.isdir(folder) and process.poll() is None
    bench.teardown()
    assert process.poll() is not None, "the broker process outlived teardown"
    assert not os.path.exists(folder), f"teardown left {folder}"
