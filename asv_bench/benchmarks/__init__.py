"""asv benchmarks for pstream, one module per concept (crc, batch, segment, log, index,
shards, recovery, broker); shared helpers in common.py. tests/asv/ imports every module
and runs each broker benchmark once, so a broken benchmark fails the tests.

Which pstream is measured:
- In an environment asv builds (virtualenv), the wheel built from the benchmarked commit,
  and nothing else: this file leaves sys.path alone.
- Anywhere else (`asv run --python=same`, `--environment existing:python3`, or importing
  these modules by hand), the in-place build of the checkout that holds this directory
  (pstream/_core*.so next to pstream/__init__.py, from `python setup.py build_ext -i`),
  put first on sys.path so an older installed pstream cannot shadow it.

crc.Kernel.track_kernel_is_hardware records which CRC-32C kernel the measured build runs.
This file must not change pstream's behaviour.
"""

import glob
import os
import sys

_MANAGED_ENV_TYPES = ("virtualenv", "conda", "mamba", "rattler")


def _use_in_place_build() -> str | None:
    """Puts the checkout's in-place build first on sys.path; returns its root, or None."""
    if os.environ.get("ASV_ENV_TYPE") in _MANAGED_ENV_TYPES:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    package = os.path.join(root, "pstream")
    built = glob.glob(os.path.join(package, "_core*.so"))
    if not (os.path.isfile(os.path.join(package, "__init__.py")) and built):
        return None
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    return root


IN_PLACE_ROOT = _use_in_place_build()
