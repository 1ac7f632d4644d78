"""The replica protocol's rules under the deterministic simulator (simulation.py): thousands of
seeds of crashes that keep only what was fsynced, pauses past the lease, cut links, lost and
duplicated messages, each checked for acknowledged records lost, two leaders of one epoch,
records read and then gone, offsets acknowledged twice; and with four brokers and three
replicas, administrators' reassignments and preferred elections among them. A failing seed is
its own reproducer: `Simulation(seed).run().check()` (with OPERATED's settings for the latter).
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:   # importlib mode: the simulator is this folder's module
    sys.path.insert(0, HERE)

from simulation import Simulation  # noqa: E402

from pstream.cluster import reassignment, rules  # noqa: E402

SEEDS = 1000          # about a minute and a half on one core
SLOW_SEEDS = 10_000   # with PSTREAM_TEST_SLOW=1 or -m slow
OPERATED = dict(brokers=4, replicas=3, operations=True)   # reassignments and preferred elections too
OPERATED_SEEDS = 250


def failures(seeds, **settings) -> dict[int, list[str]]:
    out = {}
    for seed in seeds:
        problems = Simulation(seed, **settings).run(ms=10_000, settle_ms=6_000).check()
        if problems:
            out[seed] = problems[:3]
    return out


def test_without_faults_every_record_is_acknowledged_and_replicated():
    sim = Simulation(1, faults=False).run(ms=5_000, settle_ms=3_000)
    assert sim.check() == []
    assert len(sim.acked) > 0.95 * sim.sent
    assert sorted(sim.acked.values()) == list(range(len(sim.acked)))
    assert set(sim.epoch_leaders) == {0}   # nothing failed: the first leader stays


def test_faults_happen_and_leaders_change():
    """The simulator does what it says: over a few seeds brokers crash, leaders change and records
    are cut from diverged followers (else the checks below would prove little)."""
    epochs = [len(Simulation(seed).run(ms=10_000, settle_ms=6_000).epoch_leaders) for seed in range(20)]
    assert max(epochs) >= 3 and sum(epochs) > 30


@pytest.mark.parametrize("first", range(0, SEEDS, 250))
def test_seeds(first):
    assert failures(range(first, first + 250)) == {}


@pytest.mark.slow
@pytest.mark.parametrize("first", range(SEEDS, SEEDS + SLOW_SEEDS, 1000))   # each inside the 300 s test timeout
def test_many_seeds(first):
    assert failures(range(first, first + 1000)) == {}


def test_administrators_move_replicas_and_leaderships():
    """With four brokers and three replicas, reassignments start, complete and are cancelled,
    and preferred replicas take leaderships back, among the faults (else the seeds prove little)."""
    operated: dict[str, int] = {}
    for seed in range(20):
        for kind, count in Simulation(seed, **OPERATED).run(ms=10_000, settle_ms=6_000).operated.items():
            operated[kind] = operated.get(kind, 0) + count
    assert operated["reassign"] > 20 and operated["completed"] > 10 and operated["preferred"] and operated["cancel"], \
        operated


@pytest.mark.parametrize("first", range(0, OPERATED_SEEDS, 250))
def test_seeds_with_reassignments_and_elections(first):
    assert failures(range(first, first + 250), **OPERATED) == {}


@pytest.mark.slow
@pytest.mark.parametrize("first", range(OPERATED_SEEDS, OPERATED_SEEDS + SLOW_SEEDS // 2, 1000))
def test_many_seeds_with_reassignments_and_elections(first):
    assert failures(range(first, first + 1000), **OPERATED) == {}


def test_the_checks_catch_a_broken_rule(monkeypatch):
    """A high watermark that ignores the followers acknowledges what a failover loses: the
    simulator must find it (the checks can fail)."""
    monkeypatch.setattr(rules, "high_watermark", lambda own_end, me, isr, follower_end: own_end)
    assert failures(range(40))


def test_the_checks_catch_a_reassignment_that_trusts_newcomers(monkeypatch):
    """A reassignment completed with its newcomers counted in sync before they fetched anything
    lets an empty replica lead: the simulator must find acknowledged records lost."""
    def hasty(record):
        if not record.adding and not record.removing:
            return None
        target = tuple(r for r in record.replicas if r not in record.removing)
        return record.changed(replicas=target, isr=target, isr_incarnations=("",) * len(target), leader=target[0],
                              leader_epoch=record.leader_epoch + 1, adding=(), removing=())
    monkeypatch.setattr(reassignment, "complete", hasty)
    assert failures(range(40), **OPERATED)
