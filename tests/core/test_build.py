"""The compiled core must really be what runs: no silent pure-Python fallback."""

import os
import subprocess
import sys

import pstream
from pstream import _core


def test_core_extension_is_compiled():
    assert _core.__file__.endswith((".so", ".pyd")), _core.__file__
    assert pstream.Partition.__mro__[1] is _core.Partition


def test_hardware_crc_kernel_is_active_where_the_cpu_has_one():
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if os.environ.get("PSTREAM_CRC32C_SOFTWARE") or " sse4_2" not in flags or " pclmulqdq" not in flags:
        assert pstream.crc32c_implementation() == "software"
    else:
        assert pstream.crc32c_implementation() == "sse4.2+pclmul"


def test_software_kernel_can_be_forced_and_agrees(tmp_path):
    script = (
        "import os, random, pstream, crc32c\n"
        "assert pstream.crc32c_implementation() == 'software', pstream.crc32c_implementation()\n"
        "rng = random.Random(7)\n"
        "for n in list(range(0, 300)) + [4095, 4096, 65537, 1 << 20]:\n"
        "    data = rng.randbytes(n)\n"
        "    assert pstream.crc32c(data) == crc32c.crc32c(data), n\n"
        "    assert pstream.crc32c(data[n // 2:], pstream.crc32c(data[:n // 2])) == crc32c.crc32c(data), n\n"
        "from pstream import _core\n"
        "batch = _core.encode_batch([(b'k', b'v' * 100, [('h', b'x')], 5)])\n"
        "assert _core.decode_batch(batch)[1][0].value == b'v' * 100\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PSTREAM_CRC32C_SOFTWARE="1")
    # -P and a neutral cwd: the child must import the installed package, not the source tree.
    out = subprocess.run([sys.executable, "-P", "-c", script], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
