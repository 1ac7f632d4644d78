"""Builds the Java test client (this folder's Maven project) once, and says how to run it.

    python3 tests/java/build.py          # builds if needed; prints the classpath

`ensure_built()` runs `mvn -B -q clean package dependency:copy-dependencies` when pom.xml or a source
changed since the last build (a stamp in target/ holds their digest), so the compiled classes are in
target/classes and the jars they need in target/dependency; .ci/install-java-clients calls this before the
tests, so they never download anything, and test_java_clients.py's fixture calls it too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(HERE, "target")
STAMP = os.path.join(TARGET, "build.stamp")
MAIN = "pstream.testclient.Main"


def sources_digest() -> str:
    digest = hashlib.sha256()
    paths = [os.path.join(HERE, "pom.xml")]
    for root, dirs, files in os.walk(os.path.join(HERE, "src")):
        dirs.sort()
        paths += [os.path.join(root, f) for f in sorted(files)]
    for path in paths:
        digest.update(os.path.relpath(path, HERE).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def classpath() -> str:
    return os.pathsep.join([os.path.join(TARGET, "classes"), os.path.join(TARGET, "dependency", "*")])


def ensure_built(mvn: str | None = None) -> str:
    """Builds the client if it is missing or stale; returns its classpath. RuntimeError if Maven fails."""
    digest = sources_digest()
    try:
        with open(STAMP) as f:
            if f.read().strip() == digest:
                return classpath()
    except FileNotFoundError:
        pass
    mvn = mvn or shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn is not installed (apt-get install maven; .ci/install-java-clients does it)")
    done = subprocess.run([mvn, "-B", "-q", "-Dstyle.color=never", "clean", "package", "-DskipTests",
                           "dependency:copy-dependencies"], cwd=HERE, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mvn failed ({done.returncode}):\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
    with open(STAMP, "w") as f:
        f.write(digest + "\n")
    return classpath()


if __name__ == "__main__":
    try:
        print(ensure_built())
    except RuntimeError as e:
        sys.exit(str(e))
