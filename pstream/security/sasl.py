"""One connection's SASL authentication (KIP-152: SaslHandshake, then SaslAuthenticate tokens).

The listener's enabled mechanisms are offered in the handshake; PLAIN and OAUTHBEARER take one
token, SCRAM two. Until the exchange succeeds the connection may only send ApiVersions, SaslHandshake and
SaslAuthenticate (the connection enforces it); a failure is answered with
SASL_AUTHENTICATION_FAILED after a delay (Kafka's connection.failed.authentication.delay.ms),
and the connection then closes, so passwords cannot be tried at line speed.
"""

from __future__ import annotations

import time

from pstream.protocol.error_codes import ErrorCode
from pstream.security.oauthbearer import parse_message
from pstream.security.scram import MECHANISMS, AuthenticationError, ScramServer, parse_plain, password_matches

PRE_AUTH_APIS = frozenset({17, 18, 36})   # SaslHandshake, ApiVersions, SaslAuthenticate
MECHANISM_NAMES = ("PLAIN", *MECHANISMS, "OAUTHBEARER")


class SaslStateError(Exception):
    """A request out of order (ILLEGAL_SASL_STATE): the connection closes."""


class SaslSession:
    """With reauth_ms > 0 (KIP-368, connections.max.reauth.ms) an authentication lasts that long:
    the client authenticates again on the same connection (same mechanism, same principal)
    before it expires; after that the connection may only re-authenticate."""

    def __init__(self, enabled: tuple[str, ...], store, reauth_ms: int = 0, oauth=None):
        self.enabled = enabled
        self.store = store
        self.reauth_ms = reauth_ms
        self.oauth = oauth                    # a JwtValidator when OAUTHBEARER is enabled
        self.mechanism: str | None = None
        self.principal: str | None = None    # "User:<name>" once authenticated
        self.user: str | None = None          # who authenticated, or who tried (for the log)
        self.expires_at: float | None = None  # monotonic time the authentication ends (reauth_ms > 0)
        self.reauthentications = 0
        self.token_expires_ms = 0
        self.raw = False                      # SaslHandshake v0: the tokens come as bare frames
        self._exchanging = False
        self._scram: ScramServer | None = None

    @property
    def complete(self) -> bool:
        return self.principal is not None

    @property
    def exchanging(self) -> bool:
        """Between a handshake and the end of its exchange."""
        return self._exchanging

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def handshake(self, mechanism: str) -> int:
        if self._exchanging or (self.complete and not self.reauth_ms):
            return ErrorCode.ILLEGAL_SASL_STATE
        if mechanism not in self.enabled or (self.complete and mechanism != self.mechanism):
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM   # Kafka: no change of mechanism when re-authenticating
        self.mechanism = mechanism
        self._exchanging = True
        self._scram = None
        return ErrorCode.NONE

    async def authenticate(self, token: bytes, run_blocking) -> bytes:
        """The server's token for the client's; sets `principal` when the exchange is done.
        AuthenticationError: the credentials are wrong; SaslStateError: out of order."""
        if not self._exchanging:
            raise SaslStateError("SaslAuthenticate before SaslHandshake")
        if self.mechanism == "OAUTHBEARER":
            principal, expires = self.oauth.validate(parse_message(token))
            self.token_expires_ms = int(max(0.0, expires - time.time()) * 1000)
            return self._done(principal.partition(":")[2], b"")
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
        principal = f"User:{user}"
        if self.complete and principal != self.principal:
            raise AuthenticationError(f"Cannot change principals during re-authentication from {self.principal}: "
                                      f"{principal}")
        self.reauthentications += self.complete
        self.user, self.principal, self._exchanging = user, principal, False
        if self.reauth_ms:
            self.expires_at = time.monotonic() + self.lifetime_ms / 1000
        return response

    @property
    def lifetime_ms(self) -> int:
        """session_lifetime_ms of the answer that completes an exchange (0: no re-authentication);
        an OAUTHBEARER token's own expiry comes first (KIP-368)."""
        if not self.reauth_ms:
            return 0
        return min(self.reauth_ms, self.token_expires_ms) if self.mechanism == "OAUTHBEARER" else self.reauth_ms
