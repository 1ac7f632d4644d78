"""The admin_listen setting: where the admin API listens, port 0, switched off, refused values."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest
from admin_http import get_json

from pstream.broker.config import load_config
from pstream.errors import ConfigError


def test_admin_listen_defaults_to_redpandas_address_and_comes_from_every_source(tmp_path):
    config = load_config({}, env={})
    assert (config.admin_listen_host, config.admin_listen_port) == ("127.0.0.1", 9644)
    assert load_config({}, env={"PSTREAM_ADMIN_LISTEN": "127.0.0.1:0"}).admin_listen_port == 0
    toml = tmp_path / "pstream.toml"
    toml.write_text('admin_listen = "[::1]:9650"\n')
    config = load_config({"config": str(toml)}, env={})
    assert (config.admin_listen_host, config.admin_listen_port) == ("::1", 9650)


@pytest.mark.parametrize("off", ["off", "OFF", "", " off "])
def test_admin_listen_off_switches_it_off(off):
    config = load_config({"admin_listen": off}, env={})
    assert config.admin_listen_host is None and config.admin_listen_port is None


@pytest.mark.parametrize("bad", ["9644", "localhost", "127.0.0.1:70000", "no way:1"])
def test_bad_admin_listen_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="admin_listen"):
        load_config({"admin_listen": bad}, env={})


def _logged_admin_port(broker, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"admin API on http://127\.0\.0\.1:(\d+)", broker.output())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no 'admin API on' line in the broker's log:\n{broker.output()}")


def test_port_zero_picks_a_free_port_and_the_log_says_which(broker_factory):
    broker = broker_factory("--admin-listen", "127.0.0.1:0")   # the last flag wins over the fixture's
    port = _logged_admin_port(broker)
    assert port not in (0, broker.admin_port)
    [node] = get_json(f"http://127.0.0.1:{port}/v1/brokers")
    assert node["admin_url"] == f"http://127.0.0.1:{port}"


def test_admin_listen_off_opens_no_admin_port(broker_factory):
    broker = broker_factory("--admin-listen", "off")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.admin_port), timeout=2).close()
    assert "admin API on" not in broker.output()


def test_an_admin_address_in_use_stops_the_start_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-P", "-m", "pstream", "serve", "--listen", "127.0.0.1:0",
                                 "--data-dir", str(tmp_path / "data"), "--admin-listen", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "admin_listen" in result.stderr and str(port) in result.stderr
