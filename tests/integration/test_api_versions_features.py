"""ApiVersions v3+ reports the features a Kafka 3.9 node reports (asked of Kafka 3.9.2): supported
kraft.version 0..1 (v4 only: before v4 a feature whose minimum is 0 is left out, KAFKA-17011) and
metadata.version 1..21, metadata.version finalized at 21 (3.9-IV0)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raw_kafka  # noqa: E402


@pytest.mark.parametrize("version,supported", [
    (3, [("metadata.version", 1, 21)]),
    (4, [("kraft.version", 0, 1), ("metadata.version", 1, 21)]),
])
def test_api_versions_reports_kafka_39_features(shared_broker, version, supported):
    req_cls, _ = raw_kafka.codecs("ApiVersions")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        conn.send("ApiVersions", version, req_cls(client_software_name="pstream-tests", client_software_version="1.0"))
        _, response = conn.receive("ApiVersions", version)
    assert response.error_code == 0
    assert [(f.name, f.min_version, f.max_version) for f in response.supported_features] == supported
    assert [(f.name, f.min_version_level, f.max_version_level) for f in response.finalized_features] == \
        [("metadata.version", 21, 21)]
    assert response.finalized_features_epoch >= 0 and not response.zk_migration_ready


def test_api_versions_before_v3_has_no_features(shared_broker):
    req_cls, _ = raw_kafka.codecs("ApiVersions")
    with raw_kafka.RawConnection(shared_broker.bootstrap) as conn:
        conn.send("ApiVersions", 2, req_cls())
        _, response = conn.receive("ApiVersions", 2)
    assert response.error_code == 0 and len(response.api_keys) > 30
