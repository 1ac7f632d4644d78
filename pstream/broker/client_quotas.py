"""Client quotas (KIP-546) as Kafka 3.9's KRaft controller keeps them: the store, its file, and the
rules of AlterClientQuotas and DescribeClientQuotas (ClientQuotaControlManager, ClientQuotasImage).

An entity is a user, a client-id, a user with a client-id, or an ip; each name may be null, the
default of that type. Its quotas are numbers by key: producer_byte_rate and consumer_byte_rate
(whole numbers), request_percentage and controller_mutation_rate (any) for users and client-ids;
connection_creation_rate (a whole number, at most 2^31-1) for ips. An entity with no quota left is
gone. pstream/security/quotas.py enforces the byte rates and request percentages.

File: <data>/@node/client-quotas.json, replaced whole (layout.write_json_atomic: fsynced, renamed)
on every change that persists:
    {"version": 1, "quotas": [{"entity": {"user": "alice", "client-id": null},
                               "values": {"producer_byte_rate": 1048576.0}}, ...]}
Values are JSON numbers; Kafka accepts NaN (its checks compare, and NaN compares false) and
Infinity for the double-typed keys, which Python's json writes as NaN and Infinity.

Kafka answers in the order of its Java hash maps (the entity types of an entity, the entities of
an AlterClientQuotas answer, the key whose error is reported); java_map_order reproduces that
order so answers and messages match Kafka's byte for byte. The entries of DescribeClientQuotas
come in Kafka in the order of a map shaped by the history of its metadata log; pstream sorts them.

This module owns the quota state; it does not touch the broker's other state (it hangs itself on
the broker lazily: client_quotas()).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import re

from pstream.protocol.error_codes import ErrorCode
from pstream.storage import layout

QUOTAS_FILE = "client-quotas.json"
USER, CLIENT_ID, IP = "user", "client-id", "ip"
EXACT, DEFAULT, SPECIFIED = 0, 1, 2   # DescribeClientQuotas match types; SPECIFIED: any name, the default too

# Kafka's QuotaConfig: the keys each kind of entity takes, with their ConfigDef type.
USER_CLIENT_KEYS = {"producer_byte_rate": "LONG", "consumer_byte_rate": "LONG",
                    "request_percentage": "DOUBLE", "controller_mutation_rate": "DOUBLE"}
IP_KEYS = {"connection_creation_rate": "INT"}

Entity = tuple   # ((entity type, name or None), ...) sorted by type: the key of an entity in the store
_ATTR = "_client_quotas"
_INT_MAX, _LONG_MAX = 2**31 - 1, float(2**63)   # Long.MAX_VALUE as a double is 2^63


class QuotaError(Exception):
    """A refusal Kafka answers with this code and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# --- Kafka's order ------------------------------------------------------------------------------

def java_string_hash(s: str | None) -> int:
    """String.hashCode (0 for null), as an unsigned 32-bit number."""
    h = 0
    if s is not None:
        data = s.encode("utf-16-be")
        for i in range(0, len(data), 2):
            h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h


def java_map_order(items, capacity: int | None = None) -> list:
    """The keys of [(key, hash)] (insertion order; a key again keeps its place) in the order a
    java.util.HashMap made with that initial capacity (None: the default) iterates them: by bucket
    of the final table, then by insertion."""
    first: dict = {}
    for key, h in items:
        first.setdefault(key, (len(first), h))
    threshold = 0 if capacity is None else 1 << max(0, capacity - 1).bit_length()   # tableSizeFor
    cap = 0
    for size in range(1, len(first) + 1):
        if cap == 0:   # the first put allocates the table
            cap, threshold = (threshold, int(threshold * 0.75)) if threshold else (16, 12)
        if size > threshold:
            threshold = threshold * 2 if cap >= 16 else int(cap * 2 * 0.75)
            cap *= 2
    mask = max(cap, 1) - 1
    return sorted(first, key=lambda k: (((first[k][1] ^ (first[k][1] >> 16)) & mask), first[k][0]))


def entity_hash(entity: Entity) -> int:
    """ClientQuotaEntity.hashCode: Objects.hash(entries), the map's hash plus 31."""
    return (31 + sum(java_string_hash(t) ^ java_string_hash(n) for t, n in entity)) & 0xFFFFFFFF


def kafka_entity_order(pairs, capacity: int | None = None) -> list:
    """[(type, name)] of an entity in Kafka's order (its HashMap of type -> name)."""
    names = dict(pairs)
    return [(t, names[t]) for t in java_map_order([(t, java_string_hash(t)) for t, _ in pairs], capacity)]


def entity_text(ordered) -> str:
    """ClientQuotaEntity.toString, as Kafka's messages print an entity."""
    entries = ", ".join(f"{t}={'null' if n is None else n}" for t, n in ordered)
    return f"ClientQuotaEntity(entries={{{entries}}})"


# --- checks -------------------------------------------------------------------------------------

_JAVA_V4_PART = re.compile(r"[0-9]+")
_BSD_V4 = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _java_ipv4_literal(text: str) -> bool:
    """IPAddressUtil.textToNumericFormatV4: 1 to 4 decimal parts (a.b.c.d, a.b.c, a.b, a), the last
    filling the remaining bytes."""
    parts = text.split(".")
    if not 0 < len(text) <= 15 or len(parts) > 4 or not all(_JAVA_V4_PART.fullmatch(p) for p in parts):
        return False
    return all(int(p) <= 255 for p in parts[:-1]) and int(parts[-1]) < 1 << (8 * (5 - len(parts)))


def _ipv6_literal(text: str) -> bool:
    address, _, scope = text.partition("%")
    if "%" in text and not scope.isdigit():   # a named scope (an interface): Kafka refused fe80::1%lo
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


async def valid_ip_entity(name: str | None) -> bool:
    """Kafka's isValidIpEntity: InetAddress.getByName(name) succeeds (null: the default ip). A
    literal is judged as Java judges it, without a lookup (Java reads 127.1 but not 0x7f.1, and
    [::1]); a host name is looked up (on the loop's resolver threads), as Kafka does."""
    if name is None:
        return True
    if name.startswith("["):
        return name.endswith("]") and _ipv6_literal(name[1:-1])
    if name[0] in "0123456789abcdefABCDEF:":
        if _java_ipv4_literal(name):
            return True
        if ":" in name:
            return _ipv6_literal(name)
        if _BSD_V4.fullmatch(name):   # numeric but ambiguous (hex, out of range): Java refuses it outright
            return False
    if not _HOST_NAME.fullmatch(name):
        return False
    try:
        await asyncio.get_running_loop().getaddrinfo(name, None)
    except OSError:
        return False
    return True


async def check_entity(ordered) -> dict:
    """The quota keys ({key: type}) an entity takes, [(type, name)] in Kafka's order, or QuotaError:
    Kafka's validateEntity, then configKeysForEntityType."""
    if not ordered:
        raise QuotaError(ErrorCode.INVALID_REQUEST, "Invalid empty client quota entity")
    for entity_type, name in ordered:
        if entity_type not in (USER, CLIENT_ID, IP):
            raise QuotaError(ErrorCode.INVALID_REQUEST, f"Unhandled client quota entity type: {entity_type}")
        if name == "":
            raise QuotaError(ErrorCode.INVALID_REQUEST, f"Empty {entity_type} not supported")
    names = dict(ordered)
    if IP in names:
        if len(names) > 1:   # sic: Kafka's message lacks the space
            raise QuotaError(ErrorCode.INVALID_REQUEST, "Invalid quota entity combination, IP entity should"
                                                        "not be combined with User or ClientId")
        if not await valid_ip_entity(names[IP]):
            raise QuotaError(ErrorCode.INVALID_REQUEST, f"{names[IP]} is not a valid IP or resolvable host.")
        return IP_KEYS
    return USER_CLIENT_KEYS


def check_value(keys: dict, key: str, value: float) -> None:
    """Kafka's validateQuotaKeyValue: a key this entity takes, above 0, an integral value for an
    integer key and within its type. NaN passes every comparison, so Kafka takes it."""
    kind = keys.get(key)
    if kind is None:
        raise QuotaError(ErrorCode.INVALID_REQUEST, f"Invalid configuration key {key}")
    if value <= 0.0:
        raise QuotaError(ErrorCode.INVALID_REQUEST, f"Quota {key} must be greater than 0")
    if kind == "DOUBLE":
        return
    if kind == "LONG" and value > _LONG_MAX:
        raise QuotaError(ErrorCode.INVALID_REQUEST, f"Proposed value for {key} is too large for a LONG.")
    if kind == "INT" and value > _INT_MAX:
        raise QuotaError(ErrorCode.INVALID_REQUEST, f"Proposed value for {key} is too large for an INT.")
    if abs(math.fmod(value, 1.0)) > 1e-10:
        raise QuotaError(ErrorCode.INVALID_REQUEST, f"{key} cannot be a fractional value.")


def check_filter(components) -> tuple[dict, set]:
    """({type: name or None} to match exactly, {types} to match any name) of DescribeClientQuotas
    components [(type, match type, match)], or QuotaError (ClientQuotasImage.describe)."""
    exact, specified = {}, set()
    for entity_type, match_type, match in components:
        if not entity_type:
            raise QuotaError(ErrorCode.INVALID_REQUEST, "Invalid empty entity type.")
        if entity_type in exact or entity_type in specified:
            raise QuotaError(ErrorCode.INVALID_REQUEST,
                             f"Entity type {entity_type} cannot appear more than once in the filter.")
        if entity_type not in (USER, CLIENT_ID, IP):
            raise QuotaError(ErrorCode.UNSUPPORTED_VERSION, f"Unsupported entity type {entity_type}")
        if match_type == EXACT:
            if match is None:
                raise QuotaError(ErrorCode.INVALID_REQUEST,
                                 "Request specified MATCH_TYPE_EXACT, but set match string to null.")
            exact[entity_type] = match
        elif match_type == DEFAULT:
            if match is not None:
                raise QuotaError(ErrorCode.INVALID_REQUEST,
                                 "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")
            exact[entity_type] = None
        elif match_type == SPECIFIED:
            if match is not None:
                raise QuotaError(ErrorCode.INVALID_REQUEST,
                                 "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")
            specified.add(entity_type)
        else:
            raise QuotaError(ErrorCode.INVALID_REQUEST, f"Unknown match type {match_type}")
    if (IP in exact or IP in specified) and ({USER, CLIENT_ID} & (set(exact) | specified)):
        raise QuotaError(ErrorCode.INVALID_REQUEST, "Invalid entity filter component combination. IP filter "
                                                    "component should not be used with user or clientId "
                                                    "filter component.")
    return exact, specified


# --- the store ----------------------------------------------------------------------------------

class ClientQuotas:
    """Every entity's quotas ({Entity: {key: value}}), as last persisted. Changes are planned on a
    copy (plan_alterations), written (save) and only then made current, so a describe never shows
    a quota that is not on disk; `lock` keeps one change at a time."""

    def __init__(self, node_dir: str):
        self.path = os.path.join(node_dir, QUOTAS_FILE)
        self.quotas: dict[Entity, dict[str, float]] = {}
        self.lock = asyncio.Lock()

    def load(self) -> "ClientQuotas":
        if os.path.exists(self.path):
            data = layout.read_json(self.path)
            self.quotas = {tuple(sorted(e["entity"].items())): {k: float(v) for k, v in e["values"].items()}
                           for e in data.get("quotas", []) if e.get("values")}
        return self

    def save(self, quotas: dict) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        layout.write_json_atomic(self.path, {"version": 1, "quotas": [
            {"entity": dict(entity), "values": dict(sorted(values.items()))}
            for entity, values in sorted(quotas.items(), key=_sort_key)]})

    def describe(self, exact: dict, specified: set, strict: bool) -> list[tuple[list, dict]]:
        """[(entity [(type, name)] in Kafka's order, {key: value})] matching a checked filter:
        every exact component equal, every specified type present (a default counts), and with
        strict no other type."""
        out = []
        for entity, values in sorted(self.quotas.items(), key=_sort_key):
            names = dict(entity)
            if strict and len(names) != len(exact) + len(specified):
                continue
            if all(t in names and names[t] == n for t, n in exact.items()) and specified <= names.keys():
                out.append((kafka_entity_order(entity), values))
        return out

    async def plan_alterations(self, entries) -> tuple[list, dict | None]:
        """([(entity [(type, name)] in Kafka's order, error code, message or None)] in Kafka's
        answer order, the quotas after the changes, or None when nothing changes) of
        AlterClientQuotas entries [([(type, name)], [(key, value, remove)])], as
        ClientQuotaControlManager.alterClientQuotas: each entity all or nothing; a key twice, or an
        entity twice, refuses that entity ("Ignoring duplicate entity", what Kafka says for both;
        the first of an entity named twice is still applied, as in Kafka); removals are not checked."""
        results: dict[Entity, list] = {}
        after = {entity: dict(values) for entity, values in self.quotas.items()}
        changed = False
        for pairs, ops in entries:
            ordered = kafka_entity_order(pairs, capacity=len(pairs))   # a type twice: the last name wins
            entity = tuple(sorted(ordered))
            changes: dict[str, float | None] = {}
            for key, value, remove in ops:
                changes.setdefault(key, None if remove else value)
            if len(changes) < len(ops) or entity in results:
                # Kafka notes "Duplicate quota key ..." for a key twice, then finds the entity noted and
                # says this instead, in both cases.
                results.setdefault(entity, [ordered, None, None])[1:] = [
                    ErrorCode.INVALID_REQUEST, f"Ignoring duplicate entity {entity_text(ordered)}"]
                continue
            results[entity] = [ordered, ErrorCode.NONE, None]
            try:
                keys = await check_entity(ordered)
                for key in java_map_order([(k, java_string_hash(k)) for k in changes], capacity=len(ops)):
                    if changes[key] is not None:
                        check_value(keys, key, changes[key])
            except QuotaError as exc:
                results[entity][1:] = [exc.code, str(exc)]
                continue
            current = self.quotas.get(entity, {})
            values = after.setdefault(entity, dict(current))
            for key, value in changes.items():
                if value is None:
                    changed |= values.pop(key, None) is not None
                elif not _same(current.get(key), value):
                    values[key] = value
                    changed = True
            if not values:
                del after[entity]
        order = java_map_order([(entity, entity_hash(entity)) for entity in results])
        return [tuple(results[entity]) for entity in order], after if changed else None

    async def commit(self, broker, quotas: dict) -> None:
        """Persists quotas (fsynced, off the event loop) and makes them current."""
        await broker.log.run_blocking(self.save, quotas)
        self.quotas = quotas


def _same(old: float | None, new: float) -> bool:
    """Double.equals: NaN equals NaN."""
    return old is not None and (old == new or (math.isnan(old) and math.isnan(new)))


def _sort_key(item) -> tuple:
    return tuple((t, n is not None, n or "") for t, n in item[0])


async def client_quotas(broker) -> ClientQuotas:
    """The broker's ClientQuotas, loaded from its @node directory on first use (off the loop)."""
    quotas = broker.__dict__.get(_ATTR)
    if quotas is None:
        loaded = await broker.log.run_blocking(
            ClientQuotas(os.path.join(broker.config.data_dir, layout.NODE_DIR)).load)
        quotas = broker.__dict__.setdefault(_ATTR, loaded)
    return quotas
