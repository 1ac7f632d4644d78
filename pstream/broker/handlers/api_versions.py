"""ApiVersions: answered from the handler registry, so what is advertised is what is served."""

from __future__ import annotations

import re

from pstream.broker.dispatch import REGISTRY, api
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.api_versions import ApiVersionsResponse


def supported_versions() -> list:
    return [ApiVersionsResponse.ApiVersion(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
            for a in sorted(REGISTRY.values(), key=lambda a: a.key)]


# Kafka's rule for ClientSoftwareName and ClientSoftwareVersion (ApiVersionsRequest.isValid, v3+).
_SOFTWARE_NAME_OR_VERSION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


# The features a Kafka 3.9 node reports (asked of Kafka 3.9.2): metadata.version up to 21 (3.9-IV0),
# finalized there, and kraft.version 0..1, finalized at 0 (a level-0 feature is not listed as
# finalized; before v4 a feature whose minimum is 0 is not listed at all, KAFKA-17011). pstream's
# features never change, so their epoch is fixed (Kafka's is its metadata log offset).
SUPPORTED_FEATURES = (("kraft.version", 0, 1), ("metadata.version", 1, 21))
FINALIZED_FEATURES = (("metadata.version", 21, 21),)
FINALIZED_FEATURES_EPOCH = 1


def features(version: int) -> dict:
    """The feature fields of an ApiVersions response of `version` (v3+)."""
    return {"supported_features": [ApiVersionsResponse.SupportedFeatureKey(name=n, min_version=lo, max_version=hi)
                                   for n, lo, hi in SUPPORTED_FEATURES if version >= 4 or lo > 0],
            "finalized_features_epoch": FINALIZED_FEATURES_EPOCH,
            "finalized_features": [ApiVersionsResponse.FinalizedFeatureKey(name=n, min_version_level=lo,
                                                                            max_version_level=hi)
                                   for n, lo, hi in FINALIZED_FEATURES]}


@api("ApiVersions", 0, 4)
def handle_api_versions(ctx, request):
    if ctx.version >= 3 and not (_SOFTWARE_NAME_OR_VERSION.fullmatch(request.client_software_name or "")
                                 and _SOFTWARE_NAME_OR_VERSION.fullmatch(request.client_software_version or "")):
        # As Kafka: INVALID_REQUEST and no ranges (the client's names are its bug to fix).
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=[], throttle_time_ms=0)
    return ApiVersionsResponse(error_code=0, api_keys=supported_versions(), throttle_time_ms=0,
                               **(features(ctx.version) if ctx.version >= 3 else {}))
