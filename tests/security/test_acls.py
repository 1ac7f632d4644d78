"""The authorizer's rules on their own (StandardAuthorizer's): DENY over ALLOW, the operations
READ/WRITE/DELETE/ALTER imply DESCRIBE and ALTER_CONFIGS implies DESCRIBE_CONFIGS, literal, `*`
and prefixed patterns, principals and hosts, super users, allow.everyone.if.no.acl.found, and
the index by resource type following the ACL set; the ACLs survive a reload."""

from __future__ import annotations

import pytest

from pstream.security.acls import (
    Acl,
    AclFilter,
    AclStore,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    invalid_reason,
)

T, G = ResourceType.TOPIC, ResourceType.GROUP
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALICE = "User:alice"


def acl(name="orders", op=Operation.READ, principal=ALICE, pattern=LIT, host="*", permission=Permission.ALLOW,
        rtype=T) -> Acl:
    return Acl(rtype, name, pattern, principal, host, op, permission)


@pytest.fixture
def store(tmp_path):
    return AclStore(str(tmp_path))


def authorizer(store, *acls, **kw) -> Authorizer:
    store.acls.update(acls)
    store.changed()
    return Authorizer(store, True, **kw)


def can(a: Authorizer, op, name="orders", principal=ALICE, host="10.0.0.1", rtype=T) -> bool:
    return a.authorize(principal, host, op, rtype, name)


def test_implied_operations_and_deny_over_allow(store):
    a = authorizer(store, acl(op=Operation.READ), acl(op=Operation.ALTER_CONFIGS))
    assert can(a, Operation.READ) and can(a, Operation.DESCRIBE) and can(a, Operation.DESCRIBE_CONFIGS)
    assert not can(a, Operation.WRITE) and not can(a, Operation.DELETE)
    store.acls.add(acl(op=Operation.READ, permission=Permission.DENY))
    store.changed()
    assert not can(a, Operation.READ) and can(a, Operation.DESCRIBE)   # a DENY of READ does not deny DESCRIBE
    store.acls.add(acl(op=Operation.ALL, permission=Permission.DENY))
    store.changed()
    assert not can(a, Operation.DESCRIBE)


def test_patterns_principals_and_hosts(store):
    a = authorizer(store, acl(name="pay-", pattern=PRE, op=Operation.WRITE), acl(name="*", principal="User:*"),
                   acl(name="audit", op=Operation.READ, host="10.9.9.9"))
    assert can(a, Operation.WRITE, "pay-eu") and not can(a, Operation.WRITE, "payments")
    assert can(a, Operation.READ, "anything", principal="User:bob")
    assert not can(a, Operation.WRITE, "anything", principal="User:bob")
    assert can(a, Operation.READ, "audit", host="10.9.9.9")
    assert can(a, Operation.READ, "audit")   # the "*" ACL for everyone covers it from anywhere
    assert not can(a, Operation.READ, "x", rtype=G)   # another resource type: no ACL, nothing allowed


def test_super_users_and_resources_no_acl_names(store):
    a = authorizer(store, acl(name="guarded", principal="User:bob", op=Operation.WRITE),
                   super_users="User:root;User:ops", allow_if_no_acl=True)
    assert can(a, Operation.ALL, "guarded", principal="User:ops")
    assert not can(a, Operation.WRITE, "guarded")   # an ACL names it: only bob
    assert can(a, Operation.WRITE, "free")          # no ACL names it: open
    assert Authorizer(store, False).authorize(ALICE, "h", Operation.WRITE, T, "guarded")   # no authorizer


def test_kip430_bits_and_filters(store):
    a = authorizer(store, acl(op=Operation.WRITE))
    assert a.authorized_operations(ALICE, "h", T, "orders") == (1 << Operation.WRITE) | (1 << Operation.DESCRIBE)
    store.acls.add(acl(name="o", pattern=PRE, op=Operation.DELETE))
    assert store.matching(AclFilter(T, "orders", PatternType.MATCH)) == sorted(store.acls, key=lambda x: x.to_json())
    assert store.matching(AclFilter(T, "orders", PatternType.ANY)) == [acl(op=Operation.WRITE)]


def test_the_acls_survive_a_reload(store, tmp_path):
    store.acls.update({acl(), acl(name="p-", pattern=PRE, permission=Permission.DENY, host="10.0.0.2")})
    store.save()
    again = AclStore(str(tmp_path)).load()
    assert again.acls == store.acls and set(again.by_type[T]) == store.acls


@pytest.mark.parametrize("bad,reason", [
    (acl(rtype=ResourceType.CLUSTER, name="c"), "The only valid name for the CLUSTER resource is kafka-cluster"),
    (acl(principal="alice"), "no colon"),
    (acl(op=Operation.ANY), "Invalid operation ANY"),
    (acl(pattern=PatternType.MATCH), "Invalid patternType MATCH"),
    (acl(name=""), "Resource name should not be empty"),
])
def test_invalid_acls_say_why(bad, reason):
    assert reason in invalid_reason(bad)
