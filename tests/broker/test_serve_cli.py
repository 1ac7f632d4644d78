"""`pstream serve` refuses bad settings at start, naming the setting, before opening anything."""

import os
import subprocess
import sys

import pytest


def serve(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-P", "-m", "pstream", "serve", *args], capture_output=True, text=True,
                          env=clean, cwd=cwd, timeout=60)


@pytest.mark.parametrize("args, env, named", [
    (["--retention-ms", "soon"], None, "retention"),
    (["--listen", "127.0.0.1"], None, "listen"),
    (["--default-replication-factor", "3"], None, "replication"),
    ([], {"PSTREAM_RETENTION_HOURZ": "1"}, "PSTREAM_RETENTION_HOURZ"),
])
def test_invalid_setting_stops_the_start_with_its_name(tmp_path, args, env, named):
    result = serve("--data-dir", str(tmp_path / "data"), *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_unknown_key_in_the_config_file_is_named(tmp_path):
    config = tmp_path / "pstream.toml"
    config.write_text('"log.retention.hourz" = 5\n')
    result = serve("--config", str(config), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 2
    assert "log.retention.hourz" in result.stderr and str(config) in result.stderr


def test_unknown_flag_is_a_usage_error(tmp_path):
    result = serve("--no-such-flag", cwd=tmp_path)
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


def test_a_data_directory_in_use_is_refused_naming_the_holder(tmp_path):
    import pstream

    with pstream.Log(tmp_path / "data", shards=1):
        result = serve("--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--admin-listen", "off",
                       cwd=tmp_path)
    assert result.returncode == 1
    assert f"in use by another open Log (process {os.getpid()})" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_names_the_release_and_the_crc_kernel():
    result = subprocess.run([sys.executable, "-P", "-m", "pstream", "--version"], capture_output=True, text=True,
                            timeout=60)
    import pstream
    assert result.returncode == 0
    assert result.stdout.startswith(f"pstream {pstream.__version__} (CRC-32C {pstream.crc32c_implementation()}")


def _hold_port(port: int):
    """A socket listening on 127.0.0.1:port, or None where something else holds it already."""
    import socket

    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def _serve_until_ready(tmp_path, *args):
    """Starts `pstream serve` and returns (process, its log so far) once it serves, or its exit."""
    import time

    clean = {k: v for k, v in os.environ.items() if not k.startswith("PSTREAM_")}
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-P", "-m", "pstream", "serve", "--data-dir", str(tmp_path / "data"),
                             "--listen", "127.0.0.1:0", *args], stdout=log, stderr=subprocess.STDOUT, env=clean)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = (tmp_path / "serve.log").read_text()
        if "serving Kafka on" in text:
            return proc, text
        time.sleep(0.1)
    return proc, (tmp_path / "serve.log").read_text()


def test_the_default_admin_port_taken_moves_the_admin_api_and_says_so(tmp_path):
    held = _hold_port(9644)
    proc, text = _serve_until_ready(tmp_path)
    try:
        assert proc.poll() is None, text
        assert "the admin API's default port 127.0.0.1:9644 is taken" in text and "--admin-listen" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if held is not None:
            held.close()


def test_an_admin_address_given_and_taken_is_an_error_naming_it(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, text = _serve_until_ready(tmp_path, "--admin-listen", f"127.0.0.1:{port}")
        try:
            assert proc.wait(timeout=30) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "serve.log").read_text()
    assert f"cannot listen on 127.0.0.1:{port} (setting admin_listen)" in text
