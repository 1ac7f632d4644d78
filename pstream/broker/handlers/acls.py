"""ACLs on the wire: CreateAcls, DescribeAcls, DeleteAcls (pstream/security/acls.py has the rules).

As Kafka: without an authorizer they answer SECURITY_DISABLED; describing needs DESCRIBE on the
cluster and changing needs ALTER on it (CLUSTER_AUTHORIZATION_FAILED otherwise); a creation Kafka's
controller would refuse gets INVALID_REQUEST with Kafka's message; changes are written durably
before the answer.
"""

from __future__ import annotations

import logging

from pstream.broker.dispatch import api
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.create_acls import CreateAclsResponse
from pstream.protocol.messages.delete_acls import DeleteAclsResponse
from pstream.protocol.messages.describe_acls import DescribeAclsResponse
from pstream.security.acls import (
    Acl,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    invalid_reason,
)

_log = logging.getLogger("pstream.security")

NO_AUTHORIZER = "No Authorizer is configured on the broker"
LITERAL = PatternType.LITERAL


def _enum(kind, value: int):
    try:
        return kind(value)
    except ValueError:
        return kind.UNKNOWN


def _refusal(ctx, operation: Operation) -> tuple[int, str] | None:
    if not ctx.broker.authorizer.enabled:
        return ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER
    if not ctx.allowed_on_cluster(operation):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
    return None


def _filter(f, version: int) -> AclFilter:
    return AclFilter(f.resource_type_filter, f.resource_name_filter,
                     f.pattern_type_filter if version >= 1 else LITERAL, f.principal_filter, f.host_filter,
                     f.operation, f.permission_type)


async def _change(ctx, add=frozenset(), remove=frozenset()) -> str | None:
    """Applies and stores a change of the ACLs; on a failed write puts them back and says why."""
    store = ctx.broker.acls
    store.acls.difference_update(remove)
    store.acls.update(add)
    store.changed()
    try:
        await ctx.broker.log.run_blocking(store.save)
    except OSError as exc:
        store.acls.difference_update(add)
        store.acls.update(remove)
        store.changed()
        return f"the ACLs could not be stored: {exc}"
    return None


@api("CreateAcls", 0, 3)
async def handle_create_acls(ctx, request):
    refused = _refusal(ctx, Operation.ALTER)
    if refused is not None:
        return CreateAclsResponse(throttle_time_ms=0, results=[
            CreateAclsResponse.AclCreationResult(error_code=refused[0], error_message=refused[1])
            for _ in request.creations])
    store, results, added = ctx.broker.acls, [], []
    for c in request.creations:
        acl = Acl(_enum(ResourceType, c.resource_type), c.resource_name,
                  _enum(PatternType, c.resource_pattern_type if ctx.version >= 1 else LITERAL), c.principal, c.host,
                  _enum(Operation, c.operation), _enum(Permission, c.permission_type))
        reason = invalid_reason(acl)
        if reason is not None:
            results.append(CreateAclsResponse.AclCreationResult(error_code=ErrorCode.INVALID_REQUEST,
                                                                error_message=reason))
            continue
        if acl not in store.acls and acl not in added:
            added.append(acl)
        results.append(CreateAclsResponse.AclCreationResult(error_code=0, error_message=None))
    failure = await _change(ctx, add=set(added)) if added else None
    if failure is not None:
        results = [CreateAclsResponse.AclCreationResult(error_code=ErrorCode.UNKNOWN_SERVER_ERROR,
                                                        error_message=failure) for _ in request.creations]
    elif added:
        _log.info("%s created ACLs: %s", ctx.connection.principal, "; ".join(str(a.to_json()) for a in added))
    return CreateAclsResponse(throttle_time_ms=0, results=results)


@api("DescribeAcls", 0, 3)
def handle_describe_acls(ctx, request):
    refused = _refusal(ctx, Operation.DESCRIBE)
    if refused is not None:
        return DescribeAclsResponse(throttle_time_ms=0, error_code=refused[0], error_message=refused[1], resources=[])
    by_resource: dict[tuple, list[Acl]] = {}
    for acl in ctx.broker.acls.matching(_filter(request, ctx.version)):
        by_resource.setdefault((acl.resource_type, acl.resource_name, acl.pattern_type), []).append(acl)
    return DescribeAclsResponse(throttle_time_ms=0, error_code=0, error_message=None, resources=[
        DescribeAclsResponse.DescribeAclsResource(resource_type=rtype, resource_name=name, pattern_type=pattern, acls=[
            DescribeAclsResponse.AclDescription(principal=a.principal, host=a.host, operation=a.operation,
                                                permission_type=a.permission) for a in acls])
        for (rtype, name, pattern), acls in by_resource.items()])


@api("DeleteAcls", 0, 3)
async def handle_delete_acls(ctx, request):
    refused = _refusal(ctx, Operation.ALTER)
    if refused is not None:
        return DeleteAclsResponse(throttle_time_ms=0, filter_results=[
            DeleteAclsResponse.DeleteAclsFilterResult(error_code=refused[0], error_message=refused[1],
                                                      matching_acls=[]) for _ in request.filters])
    store = ctx.broker.acls
    matched = [store.matching(_filter(f, ctx.version)) for f in request.filters]
    doomed = {a for acls in matched for a in acls}
    if doomed:
        failure = await _change(ctx, remove=doomed)
        if failure is not None:
            return DeleteAclsResponse(throttle_time_ms=0, filter_results=[
                DeleteAclsResponse.DeleteAclsFilterResult(error_code=ErrorCode.UNKNOWN_SERVER_ERROR,
                                                          error_message=failure, matching_acls=[])
                for _ in request.filters])
        _log.info("%s deleted ACLs: %s", ctx.connection.principal, "; ".join(str(a.to_json()) for a in doomed))
    return DeleteAclsResponse(throttle_time_ms=0, filter_results=[
        DeleteAclsResponse.DeleteAclsFilterResult(error_code=0, error_message=None, matching_acls=[
            DeleteAclsResponse.DeleteAclsMatchingAcl(
                error_code=0, error_message=None, resource_type=a.resource_type, resource_name=a.resource_name,
                pattern_type=a.pattern_type, principal=a.principal, host=a.host, operation=a.operation,
                permission_type=a.permission) for a in acls])
        for acls in matched])
