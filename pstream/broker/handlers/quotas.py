"""DescribeClientQuotas and AlterClientQuotas (KIP-546): quotas stored and described.

The rules, the store (<data>/@node/client-quotas.json) and Kafka's answer order are
client_quotas.py's; this module turns requests into its terms and its results into responses.
Quotas are not enforced yet: throttling arrives with the security work (users to apply them to).
Describing needs DESCRIBE_CONFIGS on the cluster and altering ALTER_CONFIGS (Kafka's
CLUSTER_AUTHORIZATION_FAILED: at the top for a description, on every entry for an alteration).
"""

from __future__ import annotations

from pstream.broker.client_quotas import QuotaError, check_filter, client_quotas
from pstream.broker.dispatch import api
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.alter_client_quotas import AlterClientQuotasResponse
from pstream.protocol.messages.describe_client_quotas import DescribeClientQuotasResponse
from pstream.security.acls import Operation

REFUSED = "Cluster authorization failed."


@api("DescribeClientQuotas", 0, 1)
async def handle_describe_client_quotas(ctx, request):
    if not ctx.allowed_on_cluster(Operation.DESCRIBE_CONFIGS):
        return DescribeClientQuotasResponse(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                                            error_message=REFUSED, entries=None)
    try:
        exact, specified = check_filter((c.entity_type, c.match_type, c.match) for c in request.components)
    except QuotaError as exc:   # Kafka answers a bad filter with no entries at all (null)
        return DescribeClientQuotasResponse(throttle_time_ms=0, error_code=exc.code, error_message=str(exc),
                                            entries=None)
    quotas = await client_quotas(ctx.broker)
    entries = [DescribeClientQuotasResponse.EntryData(
        entity=[DescribeClientQuotasResponse.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        values=[DescribeClientQuotasResponse.ValueData(key=k, value=v) for k, v in values.items()])
        for entity, values in quotas.describe(exact, specified, request.strict)]
    return DescribeClientQuotasResponse(throttle_time_ms=0, error_code=ErrorCode.NONE, error_message="",
                                        entries=entries)


@api("AlterClientQuotas", 0, 1)
async def handle_alter_client_quotas(ctx, request):
    if not ctx.allowed_on_cluster(Operation.ALTER_CONFIGS):
        ctx.failed = True
        return AlterClientQuotasResponse(throttle_time_ms=0, entries=[AlterClientQuotasResponse.EntryData(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=REFUSED,
            entity=[AlterClientQuotasResponse.EntityData(entity_type=e.entity_type, entity_name=e.entity_name)
                    for e in entry.entity]) for entry in request.entries])
    quotas = await client_quotas(ctx.broker)
    entries = [([(e.entity_type, e.entity_name) for e in entry.entity],
                [(op.key, op.value, op.remove) for op in entry.ops]) for entry in request.entries]
    async with quotas.lock:   # one change at a time: each is planned on what the last one saved
        results, after = await quotas.plan_alterations(entries)
        if after is not None and not request.validate_only:
            await quotas.commit(ctx.broker, after)
    return AlterClientQuotasResponse(throttle_time_ms=0, entries=[
        AlterClientQuotasResponse.EntryData(
            error_code=code, error_message=message,
            entity=[AlterClientQuotasResponse.EntityData(entity_type=t, entity_name=n) for t, n in entity])
        for entity, code, message in results])
