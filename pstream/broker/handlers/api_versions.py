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


@api("ApiVersions", 0, 4)
def handle_api_versions(ctx, request):
    if ctx.version >= 3 and not (_SOFTWARE_NAME_OR_VERSION.fullmatch(request.client_software_name or "")
                                 and _SOFTWARE_NAME_OR_VERSION.fullmatch(request.client_software_version or "")):
        # As Kafka: INVALID_REQUEST and no ranges (the client's names are its bug to fix).
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=[], throttle_time_ms=0)
    return ApiVersionsResponse(error_code=0, api_keys=supported_versions(), throttle_time_ms=0)
