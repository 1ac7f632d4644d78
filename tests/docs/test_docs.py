"""The documentation builds from the docstrings, without a warning (so it cannot rot)."""

from __future__ import annotations

import os
import subprocess
import sys

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def test_the_docs_build_without_warnings(tmp_path):
    # -P and a cwd elsewhere: the installed, compiled pstream is documented, not the source tree.
    proc = subprocess.run([sys.executable, "-P", "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
                           str(tmp_path / "doctrees"), os.path.abspath(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    index = (tmp_path / "html" / "api.html").read_text()
    assert "serve_in_thread" in index and "Consumer" in index
    assert "log.cleaner" in (tmp_path / "html" / "_generated" / "settings.html").read_text()
