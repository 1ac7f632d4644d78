"""The broker: one pstream.Log served over the Kafka protocol on an asyncio (uvloop) loop.

Owns the listening sockets (Kafka, and the admin HTTP API with /metrics unless admin_listen is
off), the broker's metrics, the open connections (closing idle ones after
connections.max.idle.ms), the node's identity (node id, cluster id persisted in
<data>/@node/broker.json), producer id allocation and the periodic snapshot and expiry of the
idempotent-producer state (which each partition owns: pstream/storage/producer_state.py), the
group coordinator (replayed from __consumer_offsets before the first client is served), and
clean shutdown: stop accepting, answer waiting group requests, let in-flight requests finish,
close the Log (which drains the shards, fdatasyncs, writes the indexes and the producer state
snapshots). Blocking disk work of requests runs on the Log's disk pool, never on the loop.
A storage error met while stopping is logged and makes the exit code 1; it never keeps the
process from exiting. The disk watch (free space, failed partitions) is in storage_health.

Fault injection (tests only): with PSTREAM_ENABLE_FAULT_INJECTION=1, the faults named in
PSTREAM_FAULTS are armed at start (format in pstream/_corelib/faults.pxi); without it the
variable is ignored, so a production broker never fails on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import faulthandler
import io
import logging
import os
import resource
import signal
import time
import uuid

import pstream
from pstream.admin.api import AdminApi, admin_url
from pstream.admin.http import HttpServer
from pstream.admin.metrics import BrokerMetrics
from pstream.broker.admin_view import BrokerAdminView
from pstream.broker.broker_configs import DynamicBrokerConfigs, check_changes
from pstream.broker.client_quotas import _ATTR as CLIENT_QUOTAS_ATTR
from pstream.broker.client_quotas import ClientQuotas
from pstream.broker.config import BrokerConfig
from pstream.broker.connection import CLOSE_IDLE, KafkaConnection
from pstream.broker.cores import CoreMap
from pstream.broker.cores.home import CoreSupervisor
from pstream.broker.cores.member import MemberTransactions
from pstream.broker.dispatch import load_handlers
from pstream.broker.fetch_sessions import FetchSessionCache
from pstream.broker.frames import FramePool, MemoryBudget
from pstream.broker.storage_health import CHECK_INTERVAL_S, StorageHealth
from pstream.coordinator.groups import GroupCoordinator
from pstream.coordinator.offsets import OFFSETS_TOPIC, OffsetStore
from pstream.coordinator.transactions import TransactionCoordinator
from pstream.coordinator.txn_log import TransactionLog
from pstream.errors import ConfigError
from pstream.security.acls import AclStore, Authorizer
from pstream.security.credentials import CredentialStore
from pstream.security.quotas import QuotaEnforcer
from pstream.security.http_auth import BasicAuthGuard
from pstream.security.oauthbearer import JwtValidator
from pstream.security.listeners import PrincipalMapper, TlsContext
from pstream.storage import layout
from pstream.storage.producer_state import ProducerIds

_log = logging.getLogger("pstream.broker")

BROKER_META = "broker.json"
PRODUCER_SNAPSHOT_INTERVAL_S = 60
CERTIFICATE_CHECK_INTERVAL_S = 10.0
PRODUCER_ID_EXPIRATION_MS = 24 * 3600 * 1000   # Kafka's producer.id.expiration.ms default
STOP_REPORT_S = 15.0   # a stop still going after this long logs where it waits


def new_cluster_id() -> str:
    """Kafka's format: a random UUID, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class Broker:
    """With `log`, serves that open Log (an application's: pstream.serve) instead of opening
    config.data_dir, and leaves it open when it stops."""

    def __init__(self, config: BrokerConfig, log: pstream.Log | None = None, core: int = 0,
                 relay_path: str | None = None):
        self.config = config          # the settings in force: the static ones with the dynamic ones over them
        self.static_config = config   # as started (flags, file, environment)
        self.dynamic_configs = DynamicBrokerConfigs(os.path.join(config.data_dir, layout.NODE_DIR), config.node_id)
        # With --cores N, this process is core `core` of N (pstream/broker/cores): a broker of its own.
        self.core_map = CoreMap(config.node_id, config.cores, core)
        self.node_id = self.core_map.node_of(core)
        self.supervisor: CoreSupervisor | None = None   # core 0 of several: starts and tells the others
        self.cluster = None                              # a ClusterNode with --cluster: this broker's part in the cluster
        self.relay_path = relay_path                     # a core > 0: where core 0 takes relayed requests
        self.log: pstream.Log | None = log
        self.owns_log = log is None
        self.cluster_id = ""
        self.connections: set[KafkaConnection] = set()
        self.frame_pool = FramePool()
        self.fetch_sessions = FetchSessionCache()
        self.memory = MemoryBudget(config.queued_max_request_bytes)
        self.producer_ids: ProducerIds | None = None
        # Alone: one coordinator each; in a cluster, GroupShards and TxnShards (one per partition led here).
        self.groups: GroupCoordinator | None = None
        self.transactions: TransactionCoordinator | None = None
        self.txn_markers = None   # cluster mode: markers.TxnMarkers, each partition's leader writes its marker
        self._signals_handled = False
        self._signalled = False   # SIGINT/SIGTERM came: stop (at once, or once started)
        # Idempotent appends in flight: state token -> future of (base offset, max timestamp).
        self.inflight_idempotent: dict[object, asyncio.Future] = {}
        # (topic, partition, producer id) -> the turn of its last transactional batch held for
        # its coordinator's verification (cluster mode): those behind it keep their order.
        self.txn_gates: dict[tuple[str, int, int], asyncio.Future] = {}
        self._server: asyncio.base_events.Server | None = None   # the first listener's
        self._servers: list = []                                  # every listener's
        self.listeners = config.listener_list()   # bound ports filled in at start
        for lis in self.listeners if core else ():   # core k: each listener's port + k
            lis.port += core if lis.port else 0
            if lis.advertised_port is not None:
                lis.advertised_port += core
        self.credentials = CredentialStore(os.path.join(config.data_dir, layout.NODE_DIR))
        self.tls: TlsContext | None = None
        self.admin_tls: TlsContext | None = None
        self.quota_enforcer = QuotaEnforcer(ClientQuotas(os.path.join(config.data_dir, layout.NODE_DIR)))
        self.principal_mapper = PrincipalMapper(config.ssl_principal_mapping_rules)
        self.oauth = JwtValidator(config.sasl_oauthbearer_jwks_file, config.sasl_oauthbearer_expected_audience,
                                  config.sasl_oauthbearer_expected_issuer, config.sasl_oauthbearer_sub_claim_name,
                                  config.sasl_oauthbearer_clock_skew_seconds) \
            if "OAUTHBEARER" in config.sasl_mechanisms() else None
        self.acls = AclStore(os.path.join(config.data_dir, layout.NODE_DIR))
        self.authorizer = Authorizer(self.acls, config.authorization == "acls", config.super_users,
                                     config.allow_everyone_if_no_acl_found)
        self._admin: HttpServer | None = None
        self.admin_address: tuple[str, int] | None = None    # as bound
        self.bound_address: tuple[str, int] | None = None    # the Kafka listener, as bound
        self.state = "starting"   # -> serving -> stopping -> stopped (what /v1/status/ready reports)
        self._sweeper: asyncio.Task | None = None
        self._snapshotter: asyncio.Task | None = None
        self._storage_watch: asyncio.Task | None = None
        self._cert_watch: asyncio.Task | None = None
        self.storage = StorageHealth(config.data_dir, config.storage_min_free_bytes, self._on_partition_revived)
        self.fault_injection = os.environ.get("PSTREAM_ENABLE_FAULT_INJECTION") == "1"
        self.exit_code = 0
        self._stopped = asyncio.Event()
        self.started_at = time.time()
        self.host, self.port = self.listeners[0].advertised
        self.admin_view = BrokerAdminView(self)   # all the admin package sees of the broker
        api_names = {key: entry.name for key, entry in load_handlers().items()}
        self.metrics = BrokerMetrics(self.admin_view, api_names)

    @property
    def log_readable(self) -> bool:
        """Whether the Log is open (the admin API reads it only then)."""
        return self.log is not None and self.state in ("serving", "stopping")

    # --- identity -------------------------------------------------------------------

    def _load_identity(self) -> None:
        node_dir = os.path.join(self.config.data_dir, layout.NODE_DIR)
        os.makedirs(node_dir, exist_ok=True)
        path = os.path.join(node_dir, BROKER_META)
        meta = layout.read_json(path) if os.path.exists(path) else {}
        stored = meta.get("cluster_id")
        wanted = self.config.cluster_id
        if stored and wanted and stored != wanted:
            raise ConfigError(f"setting cluster_id is {wanted!r} but the data directory {self.config.data_dir} "
                              f"belongs to cluster {stored!r}")
        self.cluster_id = stored or wanted or new_cluster_id()
        self._identity_chosen = bool(stored or wanted)   # else a fresh directory: a cluster may give it its id
        # The data directory's own id (Kafka's directory id, KIP-858): new with the directory, so a
        # broker back on an empty disk is told apart from one back with its data (cluster mode).
        self.directory_id = meta.get("directory_id") or uuid.uuid4().hex
        self._save_identity()

    def _save_identity(self) -> None:
        path = os.path.join(self.config.data_dir, layout.NODE_DIR, BROKER_META)
        meta = layout.read_json(path) if os.path.exists(path) else {}
        wanted = {"cluster_id": self.cluster_id, "node_id": self.node_id, "directory_id": self.directory_id}
        if meta != wanted:
            layout.write_json_atomic(path, wanted)

    async def alter_dynamic_configs(self, name: str, changes: list[tuple[str, str | None]],
                                    replace_all: bool = False, validate_only: bool = False) -> None:
        """Changes the dynamic broker configs of resource `name` (this node's id, or "" for the
        cluster default): [(Kafka config name, value, or None to delete)]; replace_all (AlterConfigs):
        they become the resource's only ones. Persisted, then in force; ConfigError names a bad
        change, and nothing changes then."""
        dynamic = self.dynamic_configs
        checked = check_changes(dynamic, name, changes)
        if validate_only:
            return
        scope = dynamic.scope(name)
        before = dict(scope)
        if replace_all:
            scope.clear()
        for config, value in checked:
            if value is None:
                scope.pop(config, None)
            else:
                scope[config] = value
        try:
            await self.log.run_blocking(dynamic.save)
            await self.apply_dynamic_configs()
        except BaseException:   # not persisted or not applicable: as it was
            scope.clear()
            scope.update(before)
            raise

    async def apply_dynamic_configs(self) -> None:
        """Puts the dynamic broker configs in force without a restart (broker_configs.py)."""
        old, new = self.config, self.dynamic_configs.apply_to(self.static_config)
        self.config = new
        if new.topic_defaults() != old.topic_defaults():
            await self.log.run_blocking(self.log.set_defaults, **new.topic_defaults())
        if new.cleaner_options() != old.cleaner_options():
            await self.log.run_blocking(self.log.reconfigure_cleaner, **new.cleaner_options())

    # --- topics and producer state ---------------------------------------------------

    def forget_topic(self, topic: str) -> None:
        self.groups.on_topic_deleted(topic)
        self.metrics.forget_topic(topic)

    async def allocate_producer_id(self) -> int:
        """A fresh producer id, without blocking the event loop (in a cluster: unique in the cluster)."""
        if self.cluster is not None:
            return await self.cluster.allocate_producer_id()
        producer_id = self.producer_ids.allocate_reserved()
        if producer_id is None:   # one call in ID_BLOCK reserves the next block: its fsync on the disk pool
            producer_id = await self.log.run_blocking(self.producer_ids.allocate)
        return producer_id

    async def _write_txn_markers(self, producer_id: int, epoch: int, commit: bool, partitions) -> None:
        """The transaction coordinator's second phase on this node's partitions, all at once (on
        each core's, with --cores; in a cluster, on each partition's leader); a partition deleted
        meanwhile needs none."""
        if self.cluster is not None:
            await self.txn_markers.write(producer_id, epoch, commit, partitions)
            return
        if self.supervisor is not None:
            partitions = await self.supervisor.write_markers(producer_id, epoch, commit, partitions)
        await self.write_local_markers(producer_id, epoch, commit, partitions)
        if (OFFSETS_TOPIC, 0) in partitions:
            self.groups.store.end_txn(producer_id, commit)   # its offsets count now, or never

    async def write_local_markers(self, producer_id: int, epoch: int, commit: bool, partitions) -> None:
        writes = []
        for name, index in partitions:
            topic = self.log.get_topic(name) if name in self.log else None
            if topic is not None and index < topic.partitions:
                writes.append(topic.partition(index).write_txn_marker(producer_id, epoch, commit))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def refresh_shared_state(self) -> None:
        """A core > 0: reads again what core 0 changed (topics, dynamic configs, users, ACLs, quotas)."""
        await self.log.run_blocking(self.log.refresh_topics)
        await self.log.run_blocking(self.load_security)
        old, self.config = self.config, self.dynamic_configs.load().apply_to(self.static_config)
        if self.config.cleaner_options() != old.cleaner_options():
            await self.log.run_blocking(self.log.reconfigure_cleaner, **self.config.cleaner_options())

    def load_security(self) -> None:
        self.credentials.load()
        self.acls.load()
        quotas = ClientQuotas(os.path.join(self.config.data_dir, layout.NODE_DIR)).load()
        self.__dict__[CLIENT_QUOTAS_ATTR] = quotas   # what client_quotas(broker) hands the quota APIs
        self.quota_enforcer = QuotaEnforcer(quotas)

    def _on_partition_revived(self, part) -> None:
        """The batches whose appends failed are in the log now: the idempotent producers'
        state is read again from it, so their retries are answered as duplicates."""
        part.reset_producer_state()

    @property
    def storage_refusal(self) -> str | None:
        """Why Produce is refused broker-wide (free space below storage_min_free_bytes), or None."""
        return self.storage.refusal

    async def _watch_certificates(self) -> None:
        """A renewed certificate (its files replaced) is used by new connections without a restart."""
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK_INTERVAL_S)
            for tls in (self.tls, self.admin_tls):
                if tls is not None:
                    tls.reload_if_changed()

    async def _watch_storage(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                self.storage.check(self.log)
            except Exception:
                _log.exception("the storage check failed")

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.config.data_dir, exist_ok=True)
        self.config = cfg = self.dynamic_configs.load().apply_to(self.static_config)
        if self.fault_injection and os.environ.get("PSTREAM_FAULTS"):
            armed = pstream._core.arm_faults_from_spec(os.environ["PSTREAM_FAULTS"])
            _log.warning("fault injection: %d fault(s) armed from PSTREAM_FAULTS=%r", armed,
                         os.environ["PSTREAM_FAULTS"])
        self.storage.check_space()
        core = self.core_map.core
        if self.owns_log:
            self.log = open_log(cfg, core)
        else:
            self.log.begin_serving()   # group commits and transactions go through this broker now
        try:
            if core:   # another core: core 0 runs the coordinators and changes topics
                await self._start_member()
            else:
                await self._start_coordinators()
            self.load_security()
            if cfg.bootstrap_user and not core and self.credentials.ensure_bootstrap_user(cfg.bootstrap_user):
                _log.info("created the bootstrap user %s", cfg.bootstrap_user.partition(":")[0])
            if any(lis.tls for lis in self.listeners):
                self.tls = TlsContext(cfg.ssl_certfile, cfg.ssl_keyfile, cfg.ssl_key_password, cfg.ssl_cafile,
                                      cfg.ssl_client_auth)
            if cfg.admin_api_tls:   # its own context: no client certificates asked of HTTP clients
                self.admin_tls = TlsContext(cfg.ssl_certfile, cfg.ssl_keyfile, cfg.ssl_key_password, None, "none")
            if cfg.admin_listen_host is not None and not core:   # bound first: once Kafka clients connect, so can monitors
                guard = BasicAuthGuard(self.credentials, self.authorizer.super_users, self.log.run_blocking,
                                       self.oauth) if cfg.admin_api_require_auth else None
                self._admin = HttpServer(AdminApi(self.admin_view).router(), f"pstream/{pstream.__version__}",
                                         guard=guard, ssl=self.admin_tls.context if self.admin_tls else None)
                self.admin_address = await self._start_admin(cfg)
            await self._listen()
            self.core_map.addresses[core] = {lis.name: lis.advertised for lis in self.listeners}
            if cfg.cluster:
                await self._join_cluster()
                for server in self._servers:
                    await server.start_serving()
            if cfg.cores > 1 and not core:
                self.supervisor = CoreSupervisor(self)
                self.transactions.on_change = self.supervisor.transaction_changed
                await self.supervisor.start()
        except BaseException:
            if self.supervisor is not None:
                await self.supervisor.stop()
            if self.cluster is not None:
                await self.cluster.stop()
            for server in self._servers:
                server.close()
            if self._admin is not None:
                await self._admin.close()
            if self.groups is not None:
                self.groups.stop()
            if self.transactions is not None:
                self.transactions.stop()
            self._release_log()
            self.state = "stopped"
            raise
        self._started(cfg)

    async def _join_cluster(self) -> None:
        """Cluster mode: registers in etcd, takes the cluster's id, and answers for the cluster's
        brokers and partitions from then on (the ClusterNode stands where the CoreMap was)."""
        from pstream.cluster.node import ClusterNode   # etcd's client: loaded only in cluster mode

        self.cluster = ClusterNode(self)
        cluster_id = await self.cluster.start()
        if cluster_id != self.cluster_id:
            if self._identity_chosen:   # Kafka's InconsistentClusterIdException
                raise ConfigError(f"the data directory {self.config.data_dir} belongs to cluster {self.cluster_id!r}, "
                                  f"but the etcd at {self.config.cluster} holds cluster {cluster_id!r}")
            _log.info("joined cluster %s", cluster_id)
            self.cluster_id = cluster_id
            self._save_identity()
        self.core_map = self.cluster
        if self.config.bootstrap_user:   # the cluster's users may not have it yet
            await self.cluster.shared.serialized(
                lambda: self.credentials.ensure_bootstrap_user(self.config.bootstrap_user))

    async def _start_member(self) -> None:
        """A core > 0: the identity core 0 keeps, and its view of core 0's transactions."""
        meta = layout.read_json(os.path.join(self.config.data_dir, layout.NODE_DIR, BROKER_META))
        self.cluster_id = meta["cluster_id"]
        self.transactions = MemberTransactions()

    async def _start_coordinators(self) -> None:
        """Core 0 (the only one, usually): identity, producer ids, the group and transaction coordinators."""
        cfg = self.config
        if self.owns_log:   # Kafka semantics: broker defaults apply to existing topics
            for name in self.log.topics():
                self.log.get_topic(name).follow_defaults()
        self._load_identity()
        self.producer_ids = ProducerIds(os.path.join(cfg.data_dir, layout.NODE_DIR))
        if cfg.cluster:   # one coordinator per __consumer_offsets partition led here, once joined
            from pstream.cluster.group_shards import GroupShards
            self.groups = GroupShards(self, self._group_coordinator)
        else:
            self.groups = self._group_coordinator()
            # __consumer_offsets is replayed off the event loop (it can be large after an unclean history)
            await asyncio.get_running_loop().run_in_executor(None, self.groups.store.open)
            self.groups.start()
            if not self.owns_log:
                self.log.serve_groups(self.groups, asyncio.get_running_loop())
        if cfg.cluster:   # one coordinator per __transaction_state partition led here, once joined
            from pstream.cluster.markers import TxnMarkers
            from pstream.cluster.txn_shards import TxnShards
            self.txn_markers = TxnMarkers(self)
            self.transactions = TxnShards(self, self._txn_coordinator)
            return
        self.transactions = self._txn_coordinator()
        await asyncio.get_running_loop().run_in_executor(None, self.transactions.open)
        self.transactions.start()   # finishes the commits and aborts a stop interrupted

    def _group_coordinator(self, store: OffsetStore | None = None) -> GroupCoordinator:
        cfg = self.config
        return GroupCoordinator(
            self.log, initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=cfg.group_min_session_timeout_ms,
            max_session_timeout_ms=cfg.group_max_session_timeout_ms,
            offsets_retention_ms=cfg.offsets_retention_minutes * 60_000,
            consumer_session_timeout_ms=cfg.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms=cfg.group_consumer_heartbeat_interval_ms,
            consumer_max_size=cfg.group_consumer_max_size, store=store)

    def _txn_coordinator(self, store: TransactionLog | None = None) -> TransactionCoordinator:
        cfg = self.config
        return TransactionCoordinator(
            self.log, self.allocate_producer_id, self._write_txn_markers,
            max_timeout_ms=cfg.transaction_max_timeout_ms,
            abort_check_interval_ms=cfg.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            id_expiration_ms=cfg.transactional_id_expiration_ms,
            expiration_check_interval_ms=cfg.transaction_remove_expired_transaction_cleanup_interval_ms, store=store)

    def _started(self, cfg: BrokerConfig) -> None:
        sock = self._server.sockets[0].getsockname()
        self.bound_address = (sock[0], sock[1])
        self.state = "serving"
        self.host, self.port = self.listeners[0].advertised
        self._sweeper = asyncio.ensure_future(self._sweep_idle())
        self._snapshotter = asyncio.ensure_future(self._snapshot_periodically())
        self._storage_watch = asyncio.ensure_future(self._watch_storage())
        self._cert_watch = asyncio.ensure_future(self._watch_certificates()) if self.tls or self.admin_tls else None
        _log.info("pstream %s serving Kafka on %s:%d (advertised %s:%d), data in %s, node %d, cluster %s",
                  pstream.__version__, sock[0], sock[1], self.host, self.port, cfg.data_dir, self.node_id,
                  self.cluster_id)
        for lis in self.listeners[1:] if cfg.listeners else ():
            _log.info("listener %s (%s) on %s:%d, advertised as %s", lis.name, lis.protocol, lis.host, lis.port,
                      lis.url())
        if self.admin_address is not None:
            _log.info("admin API on %s", admin_url(self.admin_address))

    async def _listen(self) -> None:
        """One server per listener; a listener on port 0 learns its port here. In a cluster, connections
        are refused until the broker has joined and taken the cluster's users and ACLs."""
        loop = asyncio.get_running_loop()
        for lis in self.listeners:
            server = await loop.create_server(lambda lis=lis: KafkaConnection(self, lis), lis.host, lis.port,
                                              backlog=1024, reuse_address=True,
                                              ssl=self.tls.context if lis.tls else None,
                                              start_serving=not self.config.cluster)
            self._servers.append(server)
            lis.port = server.sockets[0].getsockname()[1]
        self._server = self._servers[0]

    async def _start_admin(self, cfg: BrokerConfig) -> tuple:
        """Binds the admin API. Where nobody chose its address and the default port is taken (a
        second broker on this machine, say), it moves to a free port and says so."""
        try:
            return await self._admin.start(cfg.admin_listen_host, cfg.admin_listen_port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or cfg.admin_listen_given:
                raise OSError(exc.errno, f"cannot listen on {cfg.admin_listen_host}:{cfg.admin_listen_port} "
                                         f"(setting admin_listen): {exc.strerror}") from None
        address = await self._admin.start(cfg.admin_listen_host, 0)
        _log.warning("the admin API's default port %s:%d is taken (another broker?): serving it on %s instead; "
                     "choose one with --admin-listen HOST:PORT (or --admin-listen off)", cfg.admin_listen_host,
                     cfg.admin_listen_port, admin_url(address))
        return address

    async def _sweep_idle(self) -> None:
        limit = self.config.connections_max_idle_ms / 1000
        while True:
            await asyncio.sleep(min(max(limit / 4, 0.05), 5.0))
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.idle and now - conn.last_active > limit:
                    conn.abort(f"idle for more than connections.max.idle.ms ({self.config.connections_max_idle_ms})",
                               CLOSE_IDLE)

    async def _snapshot_periodically(self) -> None:
        """Bounds how much log a restart after a crash replays to rebuild producer state, and
        forgets producers idle longer than Kafka's producer.id.expiration.ms."""
        while True:
            await asyncio.sleep(PRODUCER_SNAPSHOT_INTERVAL_S)
            now_ms = int(time.time() * 1000)
            for _part, state in self.log.producer_states():
                state.expire(now_ms, PRODUCER_ID_EXPIRATION_MS)
            await self.log.snapshot_producer_states()   # written on the Log's disk pool

    async def stop(self) -> None:
        """Stops accepting, gives in-flight requests a moment, then closes the log durably.

        Whatever fails on the way (a disk error while closing the log) is logged and the broker
        still stops: exit_code says whether everything was synced."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self.state = "stopping"   # readiness answers 503 from now on
        report = self._report_stop_if_stuck()
        try:
            if self.supervisor is not None:   # the other cores first: they relay to this one
                await self.supervisor.stop()
            if self.cluster is not None:   # controlled shutdown: the cluster moves leaderships away first
                await self.cluster.stop()
                self.txn_markers.close()
            await self._drain(server)
        except Exception:
            self.exit_code = 1
            _log.exception("error while stopping; closing the log anyway")
        finally:
            self.state = "stopped"
            try:
                self._release_log()
            except Exception as exc:
                self.exit_code = 1
                _log.error("closing the log failed: %s; what was acknowledged is on disk, what was not "
                           "may be lost", exc)
            self._stopped.set()
            report.cancel()
            faulthandler.cancel_dump_traceback_later()
        if self.exit_code == 0:
            _log.info("pstream stopped; data synced and indexes written")
        else:
            _log.error("pstream stopped after a storage error (exit code %d)", self.exit_code)

    def _report_stop_if_stuck(self) -> asyncio.TimerHandle:
        """A stop still going after STOP_REPORT_S says where it waits: the stacks of the asyncio
        tasks (logged from the loop) and of every thread (written by faulthandler's own thread,
        also when the loop itself is blocked)."""
        faulthandler.dump_traceback_later(STOP_REPORT_S, exit=False)
        return asyncio.get_running_loop().call_later(STOP_REPORT_S, self._log_task_stacks)

    @staticmethod
    def _log_task_stacks() -> None:
        stacks = []
        for task in asyncio.all_tasks():
            out = io.StringIO()
            task.print_stack(limit=12, file=out)
            stacks.append(out.getvalue())
        _log.warning("still stopping after %.0f s; the tasks and where they wait:\n%s", STOP_REPORT_S,
                     "\n".join(stacks))

    def _release_log(self) -> None:
        """Closes the Log this broker opened; hands a served one back to its application."""
        if self.owns_log:
            self.log.close()
        else:
            self.log.end_serving()

    async def _drain(self, server) -> None:
        for each in self._servers:
            each.close()
        for task in (self._sweeper, self._snapshotter, self._storage_watch, self._cert_watch):
            if task is not None:
                task.cancel()
        if self.groups is not None:   # core 0's (the others have none)
            self.groups.stop()   # JoinGroup/SyncGroup requests waiting on a rebalance are answered now
        self.transactions.stop()   # a second phase not finished is finished at the next start
        for conn in self.connections:
            conn.drain()      # read no more requests: the ones in flight finish and are answered
        deadline = time.monotonic() + 5
        while any(not c.idle for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort(None)
        if self._admin is not None:   # before the Log closes: nothing reads it afterwards
            await self._admin.close()

    def handle_signals(self) -> None:
        """SIGINT and SIGTERM stop the broker cleanly, also when they come while it starts (joining
        a cluster takes a while): it stops as soon as it has started."""
        if self._signals_handled:
            return
        self._signals_handled = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: asyncio.ensure_future(self._on_signal(s)))

    async def serve_until_signalled(self) -> None:
        self.handle_signals()
        if self._signalled:
            await self.stop()
        await self._stopped.wait()

    async def _on_signal(self, sig) -> None:
        _log.info("received %s: shutting down", signal.Signals(sig).name)
        self._signalled = True
        if self.state == "serving":
            await self.stop()


def open_log(cfg: BrokerConfig, core: int = 0) -> pstream.Log:
    """The Log of the broker's settings: its data directory, shards, budgets, cleaner and topic
    defaults; with --cores N, core `core`'s share of it (and of the CPUs, for its shards)."""
    shards = cfg.shards if cfg.shards is not None or cfg.cores == 1 else max(1, (os.cpu_count() or 1) // cfg.cores)
    return pstream.Log(cfg.data_dir, shards=shards, core=core, cores=cfg.cores, retention_check_ms=cfg.retention_check_ms,
                       write_pool_bytes=cfg.write_pool_bytes, max_open_files=cfg.max_open_files,
                       index_cache_bytes=cfg.index_cache_bytes, **cfg.cleaner_options(), **cfg.topic_defaults())


def raise_fd_limit() -> None:
    """Every connection and segment holds a file descriptor: take the hard limit, as Kafka's docs advise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(config: BrokerConfig) -> int:
    """Runs a broker until SIGINT/SIGTERM (uvloop when installed)."""
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        uvloop = None
        _log.info("uvloop is not installed: using asyncio's default loop")

    async def main() -> int:
        broker = Broker(config)
        broker.handle_signals()
        await broker.start()
        await broker.serve_until_signalled()
        return broker.exit_code

    if uvloop is not None:
        return uvloop.run(main())
    return asyncio.run(main())
