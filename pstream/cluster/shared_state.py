"""What a Kafka cluster keeps in its metadata log besides topics: the users' SCRAM credentials,
the ACLs, the client quotas and the cluster-wide dynamic broker configs, the same on every
broker.

Each is a document in etcd (`<root>/shared/<name>`), the JSON its local store keeps in
`<data>/@node/`. A request that may change one (CreateAcls, AlterUserScramCredentials, ...)
runs under a cluster-wide lock (an etcd key under the broker's lease, freed if it dies): the
broker reads the documents etcd holds, runs the request on them, and publishes what changed,
fenced by the lock, before the client is answered. Every broker applies what the others
publish as its watch delivers it, and at start. The configs of one broker (resource = its id)
stay its own, as they are in Kafka.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

from pstream.broker.client_quotas import QUOTAS_FILE
from pstream.errors import ClusterUnavailableError
from pstream.protocol.messages.alter_client_quotas import AlterClientQuotasResponse
from pstream.protocol.messages.alter_configs import AlterConfigsResponse
from pstream.protocol.messages.alter_user_scram_credentials import AlterUserScramCredentialsResponse
from pstream.protocol.messages.create_acls import CreateAclsResponse
from pstream.protocol.messages.delete_acls import DeleteAclsResponse
from pstream.protocol.messages.incremental_alter_configs import IncrementalAlterConfigsResponse
from pstream.security.acls import ACLS_FILE
from pstream.security.credentials import CREDENTIALS_FILE
from pstream.storage import layout

_log = logging.getLogger("pstream.cluster")

LOCK = "shared"
CLUSTER_CONFIGS = "cluster-configs"
FILES = {"scram-credentials": CREDENTIALS_FILE, "acls": ACLS_FILE, "client-quotas": QUOTAS_FILE}
# Kafka APIs that may change a document: run under the lock in cluster mode.
CHANGING_APIS = frozenset({
    30,   # CreateAcls
    31,   # DeleteAcls
    33,   # AlterConfigs (the cluster default)
    44,   # IncrementalAlterConfigs
    49,   # AlterClientQuotas
    51,   # AlterUserScramCredentials
})


class SharedState:
    def __init__(self, node):
        self.node = node
        self.broker = node.broker
        self.metadata = node.metadata
        self._node_dir = os.path.join(self.broker.config.data_dir, layout.NODE_DIR)
        self._applied: dict[str, int] = {}   # document -> revision in force here
        self._catch_up: asyncio.Task | None = None
        self._dirty = False
        # One apply or change at a time on this broker: an older document never lands after a
        # newer one, and this broker's requests queue here rather than poll etcd's lock.
        self._local = asyncio.Lock()

    # --- the documents as this broker keeps them ------------------------------------------------

    def _export(self, document: str) -> bytes | None:
        if document == CLUSTER_CONFIGS:
            return json.dumps({"cluster": self.broker.dynamic_configs.cluster}, sort_keys=True).encode()
        path = os.path.join(self._node_dir, FILES[document])
        if not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    async def _import(self, documents: dict[str, bytes]) -> None:
        """Makes the documents this broker's, on disk and in force."""
        broker = self.broker
        for document, value in documents.items():
            if document == CLUSTER_CONFIGS:
                broker.dynamic_configs.cluster = dict(json.loads(value).get("cluster", {}))
                await broker.log.run_blocking(broker.dynamic_configs.save)
            elif document in FILES:
                await broker.log.run_blocking(layout.write_text_atomic, os.path.join(self._node_dir, FILES[document]),
                                              value.decode())
        await broker.log.run_blocking(broker.load_security)
        if CLUSTER_CONFIGS in documents:
            await broker.apply_dynamic_configs()

    async def _apply(self, held: dict[str, tuple[bytes, int]]) -> None:
        newer = {d: (value, rev) for d, (value, rev) in held.items()
                 if (d in FILES or d == CLUSTER_CONFIGS) and rev > self._applied.get(d, 0)}
        if newer:
            await self._import({d: value for d, (value, _) in newer.items()})
            for d, (_, rev) in newer.items():
                self._applied[d] = max(rev, self._applied.get(d, 0))

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Takes the cluster's documents; one the cluster lacks is seeded from this broker's."""
        async with self._local:
            await self._seed()

    async def _seed(self) -> None:
        held = await self.metadata.read_shared()
        await self._apply(held)
        for document in [*FILES, CLUSTER_CONFIGS]:
            if document in held or (document == CLUSTER_CONFIGS and not self.broker.dynamic_configs.cluster):
                continue
            value = self._export(document)
            if value is not None:
                revision = await self.metadata.write_shared(document, value, None)
                if revision is not None:
                    self._applied[document] = revision
                    _log.info("broker %d: the cluster takes this broker's %s", self.node.node_id, document)
        await self._apply(await self.metadata.read_shared())   # another broker seeded first

    def changed(self) -> None:
        """The watch saw a document change: applied here in the background, in order."""
        self._dirty = True
        if self._catch_up is None or self._catch_up.done():
            self._catch_up = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                async with self._local:
                    await self._apply(dict(self.node.view.shared))
            except Exception:
                _log.exception("broker %d: applying the cluster's users, ACLs, quotas or configs failed",
                               self.node.node_id)

    def stop(self) -> None:
        if self._catch_up is not None:
            self._catch_up.cancel()

    # --- changes ------------------------------------------------------------------------------

    async def answer(self, ctx, request, run):
        """serialized(run), or, where the cluster cannot take a change now (etcd unreachable, the
        lock held past its wait or lost), the request answered with every resource refused and
        the reason (REQUEST_TIMED_OUT, as Kafka's forwarding to an unreachable controller)."""
        try:
            return await self.serialized(run)
        except ClusterUnavailableError as exc:
            _log.warning("broker %d: %s refused: %s", self.node.node_id, type(request).__name__, exc)
            ctx.failed = True
            return refusal(ctx.header.api_key, request, exc.kafka_error, str(exc))

    async def serialized(self, run):
        """run() (a value, or an awaitable of one) under the cluster's lock, on the documents etcd
        holds; what it changed is published before its result is returned. If publishing fails
        (etcd unreachable, the lock lost in a pause past the lease), this broker takes etcd's
        documents again, undoing the change here, and the error is raised."""
        async with self._local:
            lock = await self.metadata.acquire_lock(LOCK, self.broker.config.cluster_lease_ms / 1000 * 2)
            try:
                return await self._change(run, lock)
            except BaseException:
                self._applied.clear()
                try:
                    await self._apply(await self.metadata.read_shared())
                except Exception as exc:
                    _log.warning("broker %d: cannot take the cluster's users, ACLs, quotas and configs again "
                                 "after a failed change: %s", self.node.node_id, exc)
                raise
            finally:
                try:
                    await self.metadata.release_lock(LOCK, lock)
                except Exception as exc:   # held under this broker's lease: it goes with it at the latest
                    _log.warning("broker %d: cannot release the cluster's %s lock: %s", self.node.node_id, LOCK,
                                 exc)

    async def _change(self, run, lock: int):
        await self._apply(await self.metadata.read_shared())
        before = {d: self._export(d) for d in [*FILES, CLUSTER_CONFIGS]}
        result = run()
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            result = await result
        for document, old in before.items():
            value = self._export(document)
            if value is None or value == old:
                continue
            revision = await self.metadata.write_shared(document, value, (LOCK, lock))
            if revision is None:   # paused past the lease: another broker may hold the lock now
                raise ClusterUnavailableError(f"lost the cluster's {LOCK} lock before publishing {document}")
            self._applied[document] = revision
        return result


def refusal(api_key: int, request, code: int, message: str):
    """The response of a CHANGING_APIS request that refuses each of its resources with `code`."""
    if api_key == 30:
        return CreateAclsResponse(results=[CreateAclsResponse.AclCreationResult(error_code=code, error_message=message)
                                           for _ in request.creations])
    if api_key == 31:
        return DeleteAclsResponse(filter_results=[DeleteAclsResponse.DeleteAclsFilterResult(
            error_code=code, error_message=message, matching_acls=[]) for _ in request.filters])
    if api_key in (33, 44):
        response = AlterConfigsResponse if api_key == 33 else IncrementalAlterConfigsResponse
        return response(responses=[response.AlterConfigsResourceResponse(
            error_code=code, error_message=message, resource_type=r.resource_type, resource_name=r.resource_name)
            for r in request.resources])
    if api_key == 49:
        return AlterClientQuotasResponse(entries=[AlterClientQuotasResponse.EntryData(
            error_code=code, error_message=message, entity=[AlterClientQuotasResponse.EntityData(
                entity_type=e.entity_type, entity_name=e.entity_name) for e in entry.entity])
            for entry in request.entries])
    if api_key == 51:
        result = AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult
        users = dict.fromkeys(c.name for c in [*request.deletions, *request.upsertions])
        return AlterUserScramCredentialsResponse(results=[result(user=user, error_code=code, error_message=message)
                                                          for user in users])
    raise ValueError(f"API {api_key} changes no shared document")
