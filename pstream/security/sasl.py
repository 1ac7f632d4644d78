"""One connection's SASL authentication (KIP-152: SaslHandshake, then SaslAuthenticate tokens).

The listener's enabled mechanisms are offered in the handshake; PLAIN takes one token, SCRAM
two. Until the exchange succeeds the connection may only send ApiVersions, SaslHandshake and
SaslAuthenticate (the connection enforces it); a failure is answered with
SASL_AUTHENTICATION_FAILED after a delay (Kafka's connection.failed.authentication.delay.ms),
and the connection then closes, so passwords cannot be tried at line speed.
"""

from __future__ import annotations

from pstream.protocol.error_codes import ErrorCode
from pstream.security.scram import MECHANISMS, AuthenticationError, ScramServer, parse_plain, password_matches

PRE_AUTH_APIS = frozenset({17, 18, 36})   # SaslHandshake, ApiVersions, SaslAuthenticate
MECHANISM_NAMES = ("PLAIN", *MECHANISMS)


class SaslStateError(Exception):
    """A request out of order (ILLEGAL_SASL_STATE): the connection closes."""


class SaslSession:
    def __init__(self, enabled: tuple[str, ...], store):
        self.enabled = enabled
        self.store = store
        self.mechanism: str | None = None
        self.principal: str | None = None    # "User:<name>" once authenticated
        self.user: str | None = None          # who authenticated, or who tried (for the log)
        self._scram: ScramServer | None = None

    @property
    def complete(self) -> bool:
        return self.principal is not None

    def handshake(self, mechanism: str) -> int:
        if self.mechanism is not None or self.complete:
            return ErrorCode.ILLEGAL_SASL_STATE
        if mechanism not in self.enabled:
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM
        self.mechanism = mechanism
        return ErrorCode.NONE

    async def authenticate(self, token: bytes, run_blocking) -> bytes:
        """The server's token for the client's; sets `principal` when the exchange is done.
        AuthenticationError: the credentials are wrong; SaslStateError: out of order."""
        if self.mechanism is None:
            raise SaslStateError("SaslAuthenticate before SaslHandshake")
        if self.complete:
            raise SaslStateError("SaslAuthenticate after authentication completed (re-authentication "
                                 "is not supported)")
        if self.mechanism == "PLAIN":
            _, user, password = parse_plain(token)
            self.user = user
            credentials = self.store.any_of(user)
            # PBKDF2 over thousands of rounds: off the event loop
            if not credentials or not await run_blocking(password_matches, credentials[0], password):
                raise AuthenticationError("Authentication failed: Invalid username or password")
            return self._done(user, b"")
        if self._scram is None:
            self._scram = ScramServer(self.mechanism, self.store.get)
            response = self._scram.first(token)
            self.user = self._scram.user
            return response
        response = self._scram.final(token)
        return self._done(self._scram.user, response)

    def _done(self, user: str, response: bytes) -> bytes:
        self.user = user
        self.principal = f"User:{user}"
        return response
