"""Who may use the admin HTTP API (Redpanda's admin_api_require_auth): HTTP Basic against the
SCRAM users (the password checked as SASL/PLAIN checks it), or a Bearer token checked as
OAUTHBEARER checks one when OAUTHBEARER is configured. Readiness and the metrics stay open to
monitors; every other route needs a user, and a route that changes state (POST, PUT, DELETE)
needs a super user."""

from __future__ import annotations

import base64
import binascii
import logging

from pstream.admin.http import HttpError
from pstream.security.scram import AuthenticationError, password_matches

_log = logging.getLogger("pstream.security")

OPEN_PATHS = frozenset({"/v1/status/ready", "/metrics", "/public_metrics"})
READ_METHODS = frozenset({"GET", "HEAD"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="pstream", charset="UTF-8"'}


class BasicAuthGuard:
    def __init__(self, credentials, super_users: set[str], run_blocking, tokens=None):
        self.credentials = credentials
        self.super_users = super_users
        self.run_blocking = run_blocking
        self.tokens = tokens   # an oauthbearer.JwtValidator, or None: Basic only
        self.failures = 0

    async def __call__(self, request) -> None:
        if request.path in OPEN_PATHS:
            return
        user = await self._user(request)
        if request.method not in READ_METHODS and f"User:{user}" not in self.super_users:
            raise HttpError(403, f"{request.method} {request.path} needs a super user (super_users); "
                                 f"{user} is not one")

    async def _user(self, request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and self.tokens is not None and token:
            try:
                principal, _ = self.tokens.validate(token.strip())
            except AuthenticationError as exc:
                self.failures += 1
                _log.warning("admin API: bearer token refused (%s %s): %s", request.method, request.path, exc)
                raise HttpError(401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
            return principal.partition(":")[2]
        if scheme.lower() != "basic" or not token:
            raise HttpError(401, "authentication required: HTTP Basic with a SCRAM user", CHALLENGE)
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if not sep or not user:
            raise HttpError(401, "malformed Basic credentials", CHALLENGE)
        credentials = self.credentials.any_of(user)
        if not credentials or not await self.run_blocking(password_matches, credentials[0], password.encode()):
            self.failures += 1
            _log.warning("admin API: authentication failed for user %s (%s %s)", user, request.method, request.path)
            raise HttpError(401, "invalid user or password", CHALLENGE)
        return user
