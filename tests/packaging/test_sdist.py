"""The source distribution carries what the build needs: an sdist of this checkout builds into a
wheel (Cython regenerating the core from the shipped .pyx, fragments and headers), and that
wheel installs into a fresh virtual environment and runs, from outside the source tree."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import site
import tarfile
import venv

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _run(args, cwd, timeout=600):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:4]} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_the_sdist_builds_a_wheel_that_installs_and_runs_in_a_fresh_venv(tmp_path):
    _run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], ROOT)
    [sdist] = glob.glob(str(tmp_path / "dist" / "pstream-*.tar.gz"))
    names = tarfile.open(sdist).getnames()
    top = names[0].split("/")[0]
    for needed in ("pstream/_core.pyx", "pstream/_corelib/batch.pxi", "pstream/storage/log.pxd",
                   "include/ps_bells.h", "LICENSE", "pstream/_core.pyi", "pstream/py.typed"):
        assert f"{top}/{needed}" in names, f"{needed} is missing from the sdist"
    assert f"{top}/pstream/_core.c" not in names   # generated from the sources at build time

    # The build tools of this environment (no download): the point is what the sdist holds.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
          str(tmp_path / "wheels"), sdist], tmp_path)
    [wheel] = glob.glob(str(tmp_path / "wheels" / "pstream-*.whl"))

    env = tmp_path / "venv"
    venv.create(env, with_pip=False, symlinks=True)
    python = str(env / "bin" / "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], tmp_path)
    # Only now (pip must not see, and replace, the pstream of this environment): the runtime
    # dependencies come from this environment, after the new one's own site-packages.
    [own] = glob.glob(str(env / "lib" / "python*" / "site-packages"))
    with open(os.path.join(own, "test-deps.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    out = _run([python, "-P", "-c", (
        "import pstream, tempfile, os\n"
        "assert '/venv/' in pstream.__file__, pstream.__file__\n"
        "with pstream.Log(tempfile.mkdtemp()) as log:\n"
        "    where = log.topic('t', partitions=3).append(b'v', key=b'k')\n"
        "    print(where.partition, [r.value for r in log.topic('t').partition(where.partition).read(0)])\n"
        "print(os.path.exists(os.path.join(os.path.dirname(pstream.__file__), 'py.typed')))\n")], tmp_path)
    assert out.split() == [str(pstream_partition()), "[b'v']", "True"]


def pstream_partition() -> int:
    from pstream.partitioner import key_partition
    return key_partition(b"k", 3)
