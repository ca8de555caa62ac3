"""`ecrm.loop.run(..., sigterm_as_sigint=True)`: SIGTERM stops the work as Ctrl-C does (the
work is cancelled, finishes what it must, and KeyboardInterrupt comes out), also in a process a
shell started in the background, which inherits SIGINT ignored; a second SIGTERM stops at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import ROOT

CHILD = """
import asyncio, sys
from ecrm import loop

async def work():
    print("ready", flush=True)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        await asyncio.sleep(float(sys.argv[1]))  # finishing what is in flight
        print("finished", flush=True)
        raise
    return 0

try:
    sys.exit(loop.run(work(), sigterm_as_sigint=True))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `command &` in a shell script leaves it


def _stop(finishing: float, sigterms: int, preexec: Callable[[], None] | None) -> tuple[int, list[str]]:
    """Start the child, send SIGTERM (a second one once the work is cancelled); its exit code and
    what it printed after "ready"."""
    with subprocess.Popen([sys.executable, "-c", CHILD, str(finishing)], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, preexec_fn=preexec) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGTERM)
        printed = []
        if sigterms > 1:
            printed.append(child.stdout.readline().strip())
            child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=20)
    return child.returncode, printed + output.split()


@pytest.mark.parametrize("preexec", [None, _ignore_sigint], ids=["sigint-default", "sigint-ignored"])
def test_sigterm_cancels_the_work_which_finishes_then_comes_out_as_ctrl_c(preexec: Callable[[], None] | None) -> None:
    assert _stop(0.2, 1, preexec) == (130, ["cancelled", "finished", "interrupted"])


@pytest.mark.parametrize("preexec", [None, _ignore_sigint], ids=["sigint-default", "sigint-ignored"])
def test_a_second_sigterm_stops_at_once(preexec: Callable[[], None] | None) -> None:
    assert _stop(10, 2, preexec) == (130, ["cancelled", "interrupted"])
