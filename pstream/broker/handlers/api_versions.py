"""ApiVersions: answered from the handler registry, so what is advertised is what is served."""

from __future__ import annotations

from pstream.broker.dispatch import REGISTRY, api
from pstream.protocol.messages.api_versions import ApiVersionsResponse


def supported_versions() -> list:
    return [ApiVersionsResponse.ApiVersion(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
            for a in sorted(REGISTRY.values(), key=lambda a: a.key)]


@api("ApiVersions", 0, 4)
def handle_api_versions(ctx, request):
    return ApiVersionsResponse(error_code=0, api_keys=supported_versions(), throttle_time_ms=0)
