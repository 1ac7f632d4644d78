"""Access control lists and the authorizer, with the semantics of Kafka's StandardAuthorizer.

An ACL allows or denies a principal ("User:alice", or "User:*" for everyone), from a host ("*" for
any), one operation on resources of one type named literally (or "*") or by prefix. A request is
authorized when the principal is a super user, or no DENY matches and an ALLOW does, where READ,
WRITE, DELETE and ALTER also allow DESCRIBE and ALTER_CONFIGS allows DESCRIBE_CONFIGS; a resource
with no ACL at all is open only under allow.everyone.if.no.acl.found. The ACLs are kept in
<data>/@node/acls.json, rewritten atomically on every change.
"""

from __future__ import annotations

import dataclasses
import enum
import os

from pstream.errors import ConfigError
from pstream.storage import layout

ACLS_FILE = "acls.json"
WILDCARD = "*"
CLUSTER_NAME = "kafka-cluster"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# What an ALLOW of one operation also allows (Kafka's AclAuthorizer / StandardAuthorizer).
IMPLIED = {Operation.DESCRIBE: {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER},
           Operation.DESCRIBE_CONFIGS: {Operation.ALTER_CONFIGS}}

# The operations each resource type has (KIP-430's authorized-operations bit fields list these).
OPERATIONS_OF = {
    ResourceType.TOPIC: (Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DELETE, Operation.ALTER,
                         Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS),
    ResourceType.GROUP: (Operation.READ, Operation.DELETE, Operation.DESCRIBE),
    ResourceType.CLUSTER: (Operation.CREATE, Operation.ALTER, Operation.DESCRIBE, Operation.CLUSTER_ACTION,
                           Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS, Operation.IDEMPOTENT_WRITE),
    ResourceType.TRANSACTIONAL_ID: (Operation.WRITE, Operation.DESCRIBE),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


@dataclasses.dataclass(frozen=True)
class Acl:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def to_json(self) -> list:
        return [self.resource_type.name, self.resource_name, self.pattern_type.name, self.principal, self.host,
                self.operation.name, self.permission.name]

    @classmethod
    def from_json(cls, row: list) -> Acl:
        rtype, name, pattern, principal, host, op, permission = row
        return cls(ResourceType[rtype], name, PatternType[pattern], principal, host, Operation[op],
                   Permission[permission])


@dataclasses.dataclass(frozen=True)
class AclFilter:
    """DescribeAcls and DeleteAcls: each field None (or ANY) matches anything."""

    resource_type: int = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: int = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: int = Operation.ANY
    permission: int = Permission.ANY

    def matches(self, acl: Acl) -> bool:
        if self.resource_type != ResourceType.ANY and acl.resource_type != self.resource_type:
            return False
        if self.pattern_type == PatternType.MATCH:
            if self.resource_name is not None and not _pattern_matches(acl, self.resource_name):
                return False
        else:
            if self.pattern_type != PatternType.ANY and acl.pattern_type != self.pattern_type:
                return False
            if self.resource_name is not None and acl.resource_name != self.resource_name:
                return False
        return ((self.principal is None or acl.principal == self.principal)
                and (self.host is None or acl.host == self.host)
                and (self.operation == Operation.ANY or acl.operation == self.operation)
                and (self.permission == Permission.ANY or acl.permission == self.permission))


def _pattern_matches(acl: Acl, name: str) -> bool:
    """Whether the ACL's resource pattern covers the resource `name`."""
    if acl.pattern_type == PatternType.LITERAL:
        return acl.resource_name in (name, WILDCARD)
    return acl.pattern_type == PatternType.PREFIXED and name.startswith(acl.resource_name)


def invalid_reason(acl: Acl) -> str | None:
    """Why Kafka's controller refuses to create this ACL (INVALID_REQUEST), or None."""
    if acl.resource_type in (ResourceType.ANY, ResourceType.UNKNOWN):
        return f"Invalid resourceType {acl.resource_type.name}"
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return f"Invalid patternType {acl.pattern_type.name}"
    if acl.operation in (Operation.ANY, Operation.UNKNOWN):
        return f"Invalid operation {acl.operation.name}"
    if acl.permission in (Permission.ANY, Permission.UNKNOWN):
        return f"Invalid permissionType {acl.permission.name}"
    if not acl.resource_name:
        return "Resource name should not be empty"
    if acl.resource_type == ResourceType.CLUSTER and acl.resource_name != CLUSTER_NAME:
        return "The only valid name for the CLUSTER resource is kafka-cluster"
    if ":" not in acl.principal:
        return f"Could not parse principal from `{acl.principal}` (no colon is present separating the " \
               f"principal type from name)"
    if not acl.host:
        return "Invalid host: the host must not be empty"
    return None


class AclStore:
    """The ACLs (`acls`), and by resource type (`by_type`) for the checks: whoever changes `acls`
    calls `changed()`, which builds the index anew (ACLs change rarely; checks are per request)."""

    def __init__(self, node_dir: str):
        self.path = os.path.join(node_dir, ACLS_FILE)
        self.acls: set[Acl] = set()
        self.by_type: dict[ResourceType, tuple[Acl, ...]] = {}

    def load(self) -> AclStore:
        if os.path.exists(self.path):
            try:
                self.acls = {Acl.from_json(row) for row in layout.read_json(self.path).get("acls", [])}
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{self.path} is unreadable ({exc!r}): restore it from a backup") from None
        self.changed()
        return self

    def changed(self) -> None:
        by_type: dict[ResourceType, list[Acl]] = {}
        for acl in self.acls:
            by_type.setdefault(acl.resource_type, []).append(acl)
        self.by_type = {t: tuple(acls) for t, acls in by_type.items()}   # replaced whole: readers see old or new

    def save(self) -> None:
        layout.write_json_atomic(self.path, {"acls": sorted(acl.to_json() for acl in self.acls)})

    def matching(self, flt: AclFilter) -> list[Acl]:
        return sorted((a for a in self.acls if flt.matches(a)), key=lambda a: a.to_json())


class Authorizer:
    """Decides; `enabled` False means no authorizer (Kafka without authorizer.class.name): all allowed."""

    def __init__(self, store: AclStore, enabled: bool, super_users: str = "", allow_if_no_acl: bool = False):
        self.store = store
        self.enabled = enabled
        self.super_users = {s.strip() for s in super_users.split(";") if s.strip()}
        self.allow_if_no_acl = allow_if_no_acl

    def authorize(self, principal: str, host: str, operation: Operation, resource_type: ResourceType,
                  name: str) -> bool:
        if not self.enabled or principal in self.super_users:
            return True
        found = False
        allowed = False
        for acl in self.store.by_type.get(resource_type, ()):   # an immutable tuple: safe from any thread
            if not _pattern_matches(acl, name):
                continue
            found = True
            if acl.principal not in (principal, "User:*") or acl.host not in (host, WILDCARD):
                continue
            if acl.permission == Permission.DENY:
                if acl.operation in (operation, Operation.ALL):
                    return False
            elif acl.operation in (operation, Operation.ALL) or acl.operation in IMPLIED.get(operation, ()):
                allowed = True
        return allowed or (not found and self.allow_if_no_acl)

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        """KIP-430's bit field: bit n set when operation n is authorized on the resource."""
        bits = 0
        for op in OPERATIONS_OF[resource_type]:
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits
