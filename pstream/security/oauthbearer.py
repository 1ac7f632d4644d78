"""SASL/OAUTHBEARER (KIP-255, RFC 7628) with JWTs checked against a JWKS file (as Kafka's
OAuthBearerValidatorCallbackHandler with sasl.oauthbearer.jwks.endpoint.url pointing at a file).

The client's message is `n,,<0x01>auth=Bearer <jwt><0x01>...<0x01><0x01>`; the token must be signed by
a key of the JWKS (RS256/ES256 and the other asymmetric algorithms PyJWT knows, chosen by the key,
never by the token), not expired (with the allowed clock skew), and carry the expected audience
and issuer when they are configured. The principal is the token's subject claim ("sub" by
default, Kafka's sasl.oauthbearer.sub.claim.name). The JWKS file is read again when it changes,
so keys can be rotated without a restart. PyJWT (with cryptography) does the verification: the
`oauth` extra installs it.
"""

from __future__ import annotations

import json
import os
import re
import time

from pstream.errors import ConfigError
from pstream.security.scram import AuthenticationError, decode_text

_MESSAGE = re.compile(r"(?P<gs2>[ny]|p=[^,]*),(?:a=(?P<authzid>[^,]*))?,\x01(?P<kv>.*)\x01\x01", re.S)


class JwtValidator:
    def __init__(self, jwks_file: str, audience: str | None = None, issuer: str | None = None,
                 sub_claim: str = "sub", clock_skew_s: int = 30):
        try:
            import jwt  # noqa: F401  (fail at start, not at the first login)
        except ImportError:
            raise ConfigError("OAUTHBEARER needs PyJWT with cryptography: pip install 'pstream[oauth]'") from None
        self.jwks_file, self.audience, self.issuer = jwks_file, audience, issuer
        self.sub_claim, self.clock_skew_s = sub_claim, clock_skew_s
        self._stamp = None
        self._keys: dict = {}
        self._load()

    def _load(self) -> None:
        import jwt
        try:
            stamp = os.stat(self.jwks_file).st_mtime_ns
            with open(self.jwks_file) as f:
                keyset = jwt.PyJWKSet.from_dict(json.load(f))
        except (OSError, ValueError, jwt.exceptions.PyJWKSetError) as exc:
            raise ConfigError(f"cannot read the JWKS file {self.jwks_file}: {exc}") from None
        self._keys = {key.key_id: key for key in keyset.keys}
        self._stamp = stamp

    def _current_keys(self) -> dict:
        try:
            if os.stat(self.jwks_file).st_mtime_ns != self._stamp:
                self._load()
        except (OSError, ConfigError):
            pass   # a file being replaced: keep the keys read last
        return self._keys

    def validate(self, token: str) -> tuple[str, float]:
        """(principal, expiry as a Unix time) of a valid token; AuthenticationError otherwise."""
        import jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.DecodeError as exc:
            raise AuthenticationError(f"invalid_token: the token is not a JWT ({exc})") from None
        keys = self._current_keys()
        key = keys.get(header.get("kid")) if header.get("kid") is not None else \
            (next(iter(keys.values())) if len(keys) == 1 else None)
        if key is None:
            raise AuthenticationError(f"invalid_token: no key {header.get('kid')!r} in the JWKS")
        options = {"require": ["exp", self.sub_claim], "verify_aud": self.audience is not None}
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=self.audience,
                                issuer=self.issuer, leeway=self.clock_skew_s, options=options)
        except jwt.exceptions.ExpiredSignatureError:
            raise AuthenticationError("invalid_token: the token has expired") from None
        except jwt.exceptions.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid_token: {exc}") from None
        subject = claims.get(self.sub_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(f"invalid_token: no {self.sub_claim} claim")
        return f"User:{subject}", float(claims["exp"])


def parse_message(message: bytes) -> str:
    """The bearer token of a client's OAUTHBEARER message."""
    m = _MESSAGE.fullmatch(decode_text(message, "OAUTHBEARER client message"))
    if m is None:
        raise AuthenticationError("Invalid OAUTHBEARER client message")
    pairs = dict(kv.split("=", 1) for kv in m["kv"].split("\x01") if "=" in kv)
    scheme, _, token = pairs.get("auth", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Invalid OAUTHBEARER client message: no auth=Bearer token")
    return token.strip()


def now() -> float:
    return time.time()
