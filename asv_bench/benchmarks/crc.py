"""CRC-32C: pstream's kernels beside the `crc32c` and `google-crc32c` packages.

Every timed call checksums 1 MiB in total, in chunks of `size` bytes (1024 calls of
1 KiB, 16 of 64 KiB, one of 1 MiB), so the times of all sizes compare directly
(GB/s = 1.048576e-3 / seconds) and the fixed cost per call shows at small sizes. Looping
inside the timed call also keeps 1 KiB calls measurable when asv re-runs setup before
every timed call.

pstream's software kernel: the extension picks its kernel once, at import, from
PSTREAM_CRC32C_SOFTWARE, and exposes no switch. To time both kernels in one process
without a subprocess, `pstream-software` loads a private copy of the same compiled
extension file with the variable set; the copy has its own kernel pointer, and the
benchmark is skipped unless that copy reports the 'software' kernel. `pstream` is the
kernel the normal import chose; track_kernel_is_hardware records which one it was.
"""

import importlib.machinery
import importlib.util
import os
import random
import shutil
import tempfile
import time

import pstream
from pstream import _core

from .common import KiB, MiB, SEED

_TOTAL = MiB
_SOFTWARE_CORE = None


def _software_core():
    """A second instance of pstream._core, loaded with PSTREAM_CRC32C_SOFTWARE=1."""
    global _SOFTWARE_CORE
    if _SOFTWARE_CORE is None:
        folder = tempfile.mkdtemp(prefix="pstream-crc-sw-")
        try:
            path = os.path.join(folder, os.path.basename(_core.__file__))
            shutil.copyfile(_core.__file__, path)  # another file: dlopen gives it its own statics
            before = os.environ.get("PSTREAM_CRC32C_SOFTWARE")
            os.environ["PSTREAM_CRC32C_SOFTWARE"] = "1"
            try:
                loader = importlib.machinery.ExtensionFileLoader("_core", path)
                spec = importlib.util.spec_from_file_location("_core", path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
            finally:
                if before is None:
                    del os.environ["PSTREAM_CRC32C_SOFTWARE"]
                else:
                    os.environ["PSTREAM_CRC32C_SOFTWARE"] = before
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the mapping outlives the file
        _SOFTWARE_CORE = module
    return _SOFTWARE_CORE


def _checksum_function(implementation):
    """The CRC-32C function of one implementation; NotImplementedError skips it."""
    if implementation == "pstream":
        return pstream.crc32c
    if implementation == "pstream-software":
        core = _software_core()
        if core.crc32c_implementation() != "software":
            raise NotImplementedError(f"this build ignores PSTREAM_CRC32C_SOFTWARE "
                                      f"(kernel {core.crc32c_implementation()!r})")
        return core.crc32c
    if implementation == "crc32c":
        try:
            import crc32c
        except ImportError:
            raise NotImplementedError("the crc32c package is not installed") from None
        return crc32c.crc32c
    if implementation == "google-crc32c":
        try:
            import google_crc32c
        except ImportError:
            raise NotImplementedError("the google-crc32c package is not installed") from None
        if google_crc32c.implementation != "c":
            raise NotImplementedError("google-crc32c runs its pure-Python fallback")
        return google_crc32c.value
    raise ValueError(implementation)


class CRC32C:
    """Checksum 1 MiB in chunks of `size` bytes."""

    params = ([1 * KiB, 64 * KiB, 1 * MiB], ["pstream", "pstream-software", "crc32c", "google-crc32c"])
    param_names = ["size", "implementation"]

    def setup(self, size, implementation):
        self.checksum = _checksum_function(implementation)
        self.chunk = random.Random(SEED).randbytes(size)
        self.calls = range(_TOTAL // size)
        if self.checksum(b"123456789") != 0xE3069283:  # the standard check value
            raise RuntimeError(f"{implementation}: wrong CRC-32C of b'123456789'")

    def time_crc32c_1mib(self, size, implementation):
        checksum, chunk = self.checksum, self.chunk
        for _ in self.calls:
            checksum(chunk)

    def track_gb_per_s(self, size, implementation):
        """GB/s of the best of 5 timed passes over 1 MiB (for the table; asv times above)."""
        checksum, chunk = self.checksum, self.chunk
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in self.calls:
                checksum(chunk)
            best = min(best, time.perf_counter() - start)
        return _TOTAL / best / 1e9

    track_gb_per_s.unit = "GB/s"


class Kernel:
    """Which kernel pstream's normal import chose: 1 hardware (sse4.2+pclmul), 0 software,
    -1 anything else (a stub or an unknown name)."""

    def track_kernel_is_hardware(self):
        name = pstream.crc32c_implementation()
        return 1 if name == "sse4.2+pclmul" else 0 if name == "software" else -1

    track_kernel_is_hardware.unit = "1=hardware 0=software -1=other"


# The web UI names the kernel the active build runs (the benchmark keys stay stable).
CRC32C.time_crc32c_1mib.pretty_name = (f"crc.CRC32C.time_crc32c_1mib "
                                       f"(pstream: {pstream.crc32c_implementation()})")
