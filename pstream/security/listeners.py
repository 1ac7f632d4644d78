"""Listeners as Kafka configures them: `listeners`, `advertised.listeners` and
`listener.security.protocol.map`, each listener with its security protocol (PLAINTEXT, SSL,
SASL_PLAINTEXT, SASL_SSL); the server-side TLS context (TLS 1.2+, optional client certificates),
reloaded when its files change; and the principal of a client certificate under Kafka's
`ssl.principal.mapping.rules`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import ssl

from pstream.errors import ConfigError

_log = logging.getLogger("pstream.security")

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
ANONYMOUS = "User:ANONYMOUS"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclasses.dataclass
class Listener:
    name: str
    protocol: str
    host: str
    port: int
    advertised_host: str
    advertised_port: int | None = None   # None: the bound port (a listener on port 0)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def advertised(self) -> tuple[str, int]:
        return self.advertised_host, self.advertised_port if self.advertised_port is not None else self.port

    def url(self) -> str:
        return f"{self.name}://{_bracket(self.advertised_host)}:{self.advertised[1]}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_]+)://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\s]*)):(?P<port>\d{1,5})")


def parse_listeners(text: str, what: str = "listeners") -> dict[str, tuple[str, int]]:
    """"NAME://HOST:PORT,..." -> {NAME: (host, port)} (names upper-cased, as Kafka does)."""
    out: dict[str, tuple[str, int]] = {}
    for item in (part.strip() for part in text.split(",")):
        m = _ENTRY.fullmatch(item)
        if m is None:
            raise ConfigError(f"{what}: {item!r} is not NAME://HOST:PORT")
        name, port = m["name"].upper(), int(m["port"])
        if name in out:
            raise ConfigError(f"{what}: listener name {name} appears twice")
        if port > 65535:
            raise ConfigError(f"{what}: port {port} of {name} is out of range")
        out[name] = (m["v6"] if m["v6"] is not None else m["host"], port)
    return out


def parse_protocol_map(text: str) -> dict[str, str]:
    out = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, protocol = item.partition(":")
        if not sep or protocol.upper() not in PROTOCOLS:
            raise ConfigError(f"listener_security_protocol_map: {item!r} is not NAME:PROTOCOL with a protocol of "
                              f"{', '.join(PROTOCOLS)}")
        out[name.strip().upper()] = protocol.upper()
    return out


def resolve_listeners(listeners: str, advertised: str | None, protocol_map: str) -> list[Listener]:
    """The listeners, the first being the one Metadata falls back on (Kafka's first listener)."""
    bound = parse_listeners(listeners)
    protocols = parse_protocol_map(protocol_map)
    told = parse_listeners(advertised, "advertised_listeners") if advertised else {}
    for name in told:
        if name not in bound:
            raise ConfigError(f"advertised_listeners names {name}, which is not in listeners")
    out = []
    for name, (host, port) in bound.items():
        protocol = protocols.get(name)
        if protocol is None:
            raise ConfigError(f"listener {name} has no security protocol: add {name}:PROTOCOL to "
                              f"listener_security_protocol_map, or name it after its protocol")
        adv_host, adv_port = told.get(name, (_WILDCARDS.get(host, host), port if port else None))
        if adv_host in _WILDCARDS:
            raise ConfigError(f"advertised_listeners: {name} advertises the wildcard host {adv_host!r}")
        out.append(Listener(name, protocol, host, port, adv_host, adv_port))
    ports = [lis.port for lis in out if lis.port]
    if len(set(ports)) != len(ports):
        raise ConfigError("listeners: two listeners on one port")
    return out


class TlsContext:
    """The server's ssl.SSLContext, loaded again when the certificate, key or CA file changes
    (checked by `reload_if_changed`, which the broker calls periodically): new handshakes use the
    new certificate, established connections keep theirs."""

    def __init__(self, certfile: str, keyfile: str | None, password: str | None, cafile: str | None,
                 client_auth: str):
        self.files = [f for f in (certfile, keyfile, cafile) if f]
        self.certfile, self.keyfile, self.password, self.cafile = certfile, keyfile, password, cafile
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_auth != "none":
            if not cafile:
                raise ConfigError(f"ssl_client_auth={client_auth} needs ssl_cafile (the CA of client certificates)")
            self.context.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
        self._stamps = None
        self._load()

    def _stamp(self):
        return tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in self.files)

    def _load(self) -> None:
        try:
            stamps = self._stamp()
            self.context.load_cert_chain(self.certfile, self.keyfile, self.password)
            if self.cafile:
                self.context.load_verify_locations(self.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate {self.certfile} (key {self.keyfile}, "
                              f"CA {self.cafile}): {exc}") from None
        self._stamps = stamps

    def reload_if_changed(self) -> bool:
        try:
            if self._stamp() == self._stamps:
                return False
            self._load()
        except (OSError, ConfigError) as exc:
            _log.error("TLS certificate not reloaded, the previous one stays in use: %s", exc)
            return False
        _log.info("TLS certificate reloaded from %s", self.certfile)
        return True


# --- principals of client certificates -------------------------------------------------------

_SHORT = {"commonName": "CN", "organizationalUnitName": "OU", "organizationName": "O", "localityName": "L",
          "stateOrProvinceName": "ST", "countryName": "C", "streetAddress": "STREET", "domainComponent": "DC",
          "userId": "UID"}


def _escape(value: str) -> str:
    value = re.sub(r'([,+"\\<>;])', r"\\\1", value)
    if value.startswith((" ", "#")):
        value = "\\" + value
    return value[:-1] + "\\ " if value.endswith(" ") else value


def distinguished_name(peercert: dict) -> str:
    """The subject of ssl.getpeercert() as Java's X500Principal.getName() writes it (RFC 2253:
    the most specific part first, "CN=client,OU=eng,O=acme")."""
    parts = []
    for rdn in reversed(peercert.get("subject", ())):
        parts.append("+".join(f"{_SHORT.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(parts)


_RULE = re.compile(r"\s*(?:(DEFAULT)|RULE:((?:\\/|[^/])*)/((?:\\/|[^/])*)/([LU])?)\s*(?:,|$)")


class PrincipalMapper:
    """Kafka's ssl.principal.mapping.rules: "RULE:pattern/replacement/[LU], ..., DEFAULT"; the
    first rule whose pattern matches the whole distinguished name gives the name ($1 as \\1),
    DEFAULT gives the name itself."""

    def __init__(self, rules: str):
        self.rules: list[tuple[re.Pattern, str, str] | None] = []
        text, pos = rules.strip() or "DEFAULT", 0
        while pos < len(text):
            m = _RULE.match(text, pos)
            if m is None or m.end() == pos:
                raise ConfigError(f"ssl_principal_mapping_rules: cannot read {text[pos:]!r} (RULE:pattern/"
                                  f"replacement/[LU] or DEFAULT, separated by commas)")
            pos = m.end()
            if m[1]:
                self.rules.append(None)
            else:
                try:
                    pattern = re.compile(m[2].replace("\\/", "/"))
                except re.error as exc:
                    raise ConfigError(f"ssl_principal_mapping_rules: bad pattern {m[2]!r}: {exc}") from None
                replacement = re.sub(r"\$(\d)", r"\\\1", m[3].replace("\\/", "/"))
                self.rules.append((pattern, replacement, m[4] or ""))

    def principal(self, dn: str) -> str:
        for rule in self.rules:
            if rule is None:
                return f"User:{dn}"
            pattern, replacement, case = rule
            if pattern.fullmatch(dn):
                name = pattern.sub(replacement, dn, count=1)
                return "User:" + (name.lower() if case == "L" else name.upper() if case == "U" else name)
        raise ValueError(f"no ssl.principal.mapping.rules rule matches {dn!r}")
