"""The shard-mutex contract of include/ps_lock.h, checked by a debug build of the core.

A debug build records which thread holds each shard mutex and aborts when code documented
as "mutex held" runs without it, or a thread releases a mutex it does not hold. The slow
test builds one from this source tree and runs the storage tests on it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pstream import _core

ROOT = Path(__file__).resolve().parents[2]


def test_release_build_compiles_the_checks_away():
    if _core.LOCK_CHECKS:
        pytest.skip("this is a debug build")
    _core._break_lock_contract()   # unchecked: a no-op on an unlocked, private mutex


def _debug_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if name.endswith((".so", ".c")) or not (ROOT / name).is_file():
            continue
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    env = dict(os.environ, PSTREAM_DEBUG_BUILD="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, env=env, check=True,
                   capture_output=True)
    return tree


@pytest.mark.slow
def test_debug_build_upholds_the_contract(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the source tree")
    tree = _debug_tree(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(tree))
    probe = subprocess.run([sys.executable, "-P", "-c", "from pstream import _core; print(_core.LOCK_CHECKS); "
                            "_core._break_lock_contract()"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "True"
    assert probe.returncode != 0 and "lock contract broken" in probe.stderr
    run = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "--rootdir", str(tree), str(tree / "tests" / "storage")],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
