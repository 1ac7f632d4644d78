"""Broker-side coordination state kept beside the log: consumer groups and their committed
offsets (groups.py, offsets.py in __consumer_offsets) and transactions (transactions.py,
txn_log.py in __transaction_state).

Runs on the event loop thread, per batch or per request, never per record; it reads the
log only through the public `pstream.Log` API and never touches segment files.
"""

from pstream.coordinator.offsets import OFFSETS_TOPIC
from pstream.coordinator.txn_log import TXN_TOPIC

# Topics only the broker writes, deletes or reshapes; Metadata marks them internal.
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TXN_TOPIC})
