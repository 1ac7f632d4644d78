"""Broker-side coordination state kept beside the log: idempotent producer state (producer
ids and per-partition sequences), later consumer groups and committed offsets.

Runs on the event loop thread, per batch or per request, never per record; it reads the
log only through the public `pstream.Log` API and never touches segment files.
"""
