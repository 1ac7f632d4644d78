"""Authentication on the wire: SaslHandshake and SaslAuthenticate (KIP-152), and the SCRAM users:
DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554).

The exchange itself is pstream/security/sasl.py's; a failure is logged with the peer, counted in
pstream_sasl_authentications_total, answered after connection_failed_authentication_delay_ms
with SASL_AUTHENTICATION_FAILED, and the connection closes once the answer is out.
"""

from __future__ import annotations

import asyncio
import logging

from pstream.broker.dispatch import api
from pstream.protocol.error_codes import ErrorCode
from pstream.protocol.messages.alter_user_scram_credentials import AlterUserScramCredentialsResponse as Alter
from pstream.protocol.messages.describe_user_scram_credentials import (
    DescribeUserScramCredentialsResponse as Desc,
)
from pstream.protocol.messages.sasl_authenticate import SaslAuthenticateResponse
from pstream.protocol.messages.sasl_handshake import SaslHandshakeResponse
from pstream.security.acls import Operation
from pstream.security.sasl import SaslStateError
from pstream.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, AuthenticationError, credential_from_salted

_log = logging.getLogger("pstream.security")

SCRAM_BY_ID = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}   # Kafka's ScramMechanism type ids
SCRAM_ID = {name: key for key, name in SCRAM_BY_ID.items()}



@api("SaslHandshake", 0, 1)
def handle_sasl_handshake(ctx, request):
    conn = ctx.connection
    mechanisms = list(ctx.broker.config.sasl_mechanisms())
    if conn.sasl is None or (conn.sasl.complete and not conn.sasl.reauth_ms):
        # as Kafka: a listener without SASL, or authenticated already without re-authentication
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    error = conn.sasl.handshake(request.mechanism)
    if error == ErrorCode.NONE and ctx.version == 0:
        conn.sasl.raw = True   # v0: the tokens follow as bare frames (KafkaConnection._dispatch_sasl_token)
    if error == ErrorCode.UNSUPPORTED_SASL_MECHANISM:
        _log.warning("%s: SASL mechanism %r is not enabled (enabled: %s)", conn.peer, request.mechanism,
                     ", ".join(mechanisms))
        conn.close_after_flush = True
    elif error != ErrorCode.NONE:
        conn.close_after_flush = True
    return SaslHandshakeResponse(error_code=error, mechanisms=mechanisms)


@api("SaslAuthenticate", 0, 2)
async def handle_sasl_authenticate(ctx, request):
    conn, broker = ctx.connection, ctx.broker
    session = conn.sasl
    if session is None or (session.complete and not session.reauth_ms):   # also Kafka's on a non-SASL listener
        return SaslAuthenticateResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, auth_bytes=b"",
                                        error_message="SaslAuthenticate request received after successful "
                                                      "authentication")
    try:
        token = await session.authenticate(bytes(request.auth_bytes), broker.log.run_blocking)
    except SaslStateError as exc:
        conn.close_after_flush = True
        return SaslAuthenticateResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message=str(exc),
                                        auth_bytes=b"")
    except AuthenticationError as exc:
        _log.warning("%s: SASL %s authentication failed (user %s): %s", conn.peer, session.mechanism,
                     session.user or "?", exc)
        broker.metrics.authenticated(session.mechanism, "failure")
        conn.close_after_flush = True
        await asyncio.sleep(broker.config.connection_failed_authentication_delay_ms / 1000)
        return SaslAuthenticateResponse(error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(exc),
                                        auth_bytes=b"")
    done = not session.exchanging
    if done:
        conn.principal = session.principal
        broker.metrics.authenticated(session.mechanism, "success")
        _log.debug("%s: authenticated as %s with %s", conn.peer, session.principal, session.mechanism)
    lifetime = session.lifetime_ms if done else 0   # KIP-368: re-authenticate within it
    return SaslAuthenticateResponse(error_code=0, error_message=None, auth_bytes=token, session_lifetime_ms=lifetime)


# --- SCRAM users ---------------------------------------------------------------------------------------
# Describing needs DESCRIBE on the cluster and altering ALTER, as in Kafka; refused, each answers as
# Kafka's getErrorResponse does (CLUSTER_AUTHORIZATION_FAILED on every result, and at the top of a
# description; a description's results name no user, an alteration's its users sorted).

REFUSED = "Cluster authorization failed."


@api("DescribeUserScramCredentials", 0, 0)
def handle_describe_user_scram_credentials(ctx, request):
    if not ctx.allowed_on_cluster(Operation.DESCRIBE):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return Desc(throttle_time_ms=0, error_code=code, error_message=REFUSED, results=[
            Desc.DescribeUserScramCredentialsResult(user="", error_code=code, error_message=REFUSED)
            for _ in request.users or ()])
    store = ctx.broker.credentials
    names = [u.name for u in request.users] if request.users else sorted(store.users)
    results, seen = [], set()
    duplicates = {n for n in names if names.count(n) > 1}
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if name in duplicates:
            results.append(Desc.DescribeUserScramCredentialsResult(
                user=name, error_code=ErrorCode.DUPLICATE_RESOURCE,
                error_message=f"Cannot describe SCRAM credentials for the same user twice in a single request: "
                              f"{name}"))
        elif name not in store.users:
            results.append(Desc.DescribeUserScramCredentialsResult(
                user=name, error_code=ErrorCode.RESOURCE_NOT_FOUND,
                error_message=f"Attempt to describe a user credential that does not exist: {name}"))
        else:
            results.append(Desc.DescribeUserScramCredentialsResult(user=name, error_code=0, error_message=None,
                credential_infos=[Desc.CredentialInfo(mechanism=SCRAM_ID[m], iterations=c.iterations)
                                  for m, c in sorted(store.users[name].items())]))
    return Desc(throttle_time_ms=0, error_code=0, error_message=None, results=results)


def _alteration_error(name: str, mechanism: int, iterations: int | None, twice: set) -> tuple[int, str] | None:
    if not name:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    if name in twice:
        return ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"
    if mechanism not in SCRAM_BY_ID:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"
    if iterations is not None and iterations < MIN_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"
    if iterations is not None and iterations > MAX_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"
    return None


@api("AlterUserScramCredentials", 0, 0)
async def handle_alter_user_scram_credentials(ctx, request):
    broker = ctx.broker
    if not ctx.allowed_on_cluster(Operation.ALTER):
        ctx.failed = True
        users = sorted({d.name for d in request.deletions} | {u.name for u in request.upsertions})
        return Alter(throttle_time_ms=0, results=[Alter.AlterUserScramCredentialsResult(
            user=name, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=REFUSED) for name in users])
    store = broker.credentials
    keys = [(d.name, d.mechanism) for d in request.deletions] + [(u.name, u.mechanism) for u in request.upsertions]
    twice = {name for name, mech in keys if keys.count((name, mech)) > 1}
    errors: dict[str, tuple[int, str]] = {}
    changes = []
    for d in request.deletions:
        error = _alteration_error(d.name, d.mechanism, None, twice)
        if error is None and store.get(d.name, SCRAM_BY_ID[d.mechanism]) is None:
            error = ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"
        if error is not None:
            errors.setdefault(d.name, error)
        else:
            changes.append((d.name, SCRAM_BY_ID[d.mechanism], None))
    for u in request.upsertions:
        error = _alteration_error(u.name, u.mechanism, u.iterations, twice)
        if error is None and (not u.salt or not u.salted_password):
            error = ErrorCode.UNACCEPTABLE_CREDENTIAL, "Salt and salted password must not be empty"
        if error is not None:
            errors.setdefault(u.name, error)
        else:
            mechanism = SCRAM_BY_ID[u.mechanism]
            changes.append((u.name, mechanism, credential_from_salted(mechanism, bytes(u.salted_password),
                                                                      bytes(u.salt), u.iterations)))
    applied = [(name, mech, cred) for name, mech, cred in changes if name not in errors]
    if applied:
        before = {name: dict(store.users.get(name, {})) for name, _, _ in applied}
        for name, mechanism, credential in applied:
            if credential is None:
                store.delete(name, mechanism)
            else:
                store.put(name, credential)
        try:
            await broker.log.run_blocking(store.save)
        except OSError as exc:
            for name, mechs in before.items():   # as it was: nothing half-applied
                store.users.pop(name, None)
                if mechs:
                    store.users[name] = mechs
            for name, _, _ in applied:
                errors[name] = ErrorCode.UNKNOWN_SERVER_ERROR, f"the credentials could not be stored: {exc}"
        else:
            _log.info("SCRAM credentials changed: %s", ", ".join(
                f"{'deleted' if c is None else 'set'} {n}/{m}" for n, m, c in applied))
    users = list(dict.fromkeys(name for name, _ in keys))
    return Alter(throttle_time_ms=0, results=[
        Alter.AlterUserScramCredentialsResult(user=name, error_code=errors.get(name, (0, None))[0],
                                              error_message=errors.get(name, (0, None))[1]) for name in users])
