"""kill -9 loops of a process appending through the embedded Log (flush="always": an append is
acknowledged only after the fdatasync that covers it). The parent records every acknowledgement,
then reopens the log: nothing acknowledged is lost or changed, no offset is handed out twice, and
no crash is ever mistaken for damage (recovery cuts only a torn tail).

The loop itself is tests/storage/test_crash.py's (its writer is crash_writer.py); this module runs
it short by default and long when slow tests are selected.
"""

from __future__ import annotations


import pytest


from test_crash import kill_loop  # noqa: E402


def test_acked_records_survive_a_few_sigkills(tmp_path):
    acked, verified = kill_loop(tmp_path, rounds=5, seed=11)
    assert acked > 0 and verified >= 2


@pytest.mark.slow
def test_acked_records_survive_sixty_sigkills(tmp_path):
    kill_loop(tmp_path, rounds=60, seed=20261205)
