"""CPU priority of ecrm's own processes: bulk work yields the cores, urgent work takes them.

The campaigns' worker (`ecrm worker`) lowers its priority: a higher nice (`send.campaign_nice`)
and, optionally, Linux's SCHED_BATCH or SCHED_IDLE policy (`send.campaign_policy`). The
transactional worker (`ecrm worker --transactional`) raises its own (`send.transactional_nice`,
below 0), which needs root or CAP_SYS_NICE; without it, it logs one line and runs at its nice
as before. The API keeps its priority: above PostgreSQL's backends it could slow ingest, and a
message's accept is one statement.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum

logger = logging.getLogger(__name__)


class Policy(StrEnum):
    """How the campaigns' worker shares the cores (sched(7))."""

    NORMAL = "normal"  # SCHED_OTHER at `campaign_nice`
    BATCH = "batch"  # SCHED_BATCH at `campaign_nice`: treated as CPU-bound, it never preempts on waking
    IDLE = "idle"  # SCHED_IDLE: runs only on cores nothing else wants; nice no longer matters


POLICIES = {Policy.BATCH: "SCHED_BATCH", Policy.IDLE: "SCHED_IDLE"}


def yield_cores(nice: int, policy: Policy = Policy.NORMAL) -> int:
    """Lower this process's priority by `nice` and switch it to `policy` where the system has it
    (Linux); the new niceness."""
    niceness = os.nice(nice)
    name = POLICIES.get(policy)
    if name is not None:
        scheduler = getattr(os, name, None)
        if scheduler is None or not hasattr(os, "sched_setscheduler"):
            logger.warning("this system has no %s; the campaigns' worker runs at nice %d only", name, niceness)
        else:
            os.sched_setscheduler(0, scheduler, os.sched_param(0))
    return niceness


def claim_cores(nice: int) -> int:
    """Raise this process's priority to `nice` (0 or below) if allowed; the niceness it runs at."""
    current = os.nice(0)
    if nice >= current:
        return current
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        logger.info("not allowed to raise the CPU priority to nice %d (needs root or CAP_SYS_NICE); "
                    "running at nice %d", nice, current)
        return current
    return os.nice(0)
