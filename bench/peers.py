"""The local peers the send benchmarks talk to (the SMTP sink, the Twilio peer, the push
service), each started as its own process so that its CPU is not counted as the client's, and
the tally that tells lost and duplicated messages from what a peer counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """This process's environment with the checkout on PYTHONPATH, for the processes a benchmark starts."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


class PeerProcess:
    """``python -m <module> --port 0 --stats-file FILE`` on a free loopback port. Each peer prints
    ``... listening on HOST:PORT`` once bound and writes its tally to FILE when SIGTERM stops it."""

    module = ""
    name = ""  # for the error when it does not start

    def __init__(self, stats_file: Path, *options: str) -> None:
        self.stats_file = stats_file
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", "0", "--stats-file", str(stats_file), *options],
            stdout=subprocess.PIPE, cwd=ROOT, env=child_env(),
        )
        self.address = self._read_address()
        self.port = int(self.address.rsplit(":", 1)[1])
        self.ps = psutil.Process(self.process.pid)

    def _read_address(self) -> str:
        """HOST:PORT from the banner; a peer silent for 30 s is killed (its readline then ends)."""
        assert self.process.stdout is not None
        timer = threading.Timer(30, self.process.kill)
        timer.start()
        banner = self.process.stdout.readline()
        timer.cancel()
        if not banner:
            raise RuntimeError(f"{self.name} did not start")
        return banner.decode().rsplit(" ", 1)[1].strip()

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> dict[str, Any]:
        """SIGTERM the peer and return the tally it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        stats: dict[str, Any] = json.loads(self.stats_file.read_text(encoding="utf-8"))
        return stats


class SinkProcess(PeerProcess):
    """``ecrm.peers.smtp_sink``; its tally is ``SmtpSink.stats()``, ``per_recipient`` and ``samples``
    (one body in ``sample_every``)."""

    module, name = "ecrm.peers.smtp_sink", "the SMTP sink"

    def __init__(self, stats_file: Path, sample_every: int | None = None) -> None:
        super().__init__(stats_file, *(["--sample-every", str(sample_every)] if sample_every is not None else []))


class TwilioSinkProcess(PeerProcess):
    """``ecrm.peers.twilio_sink``; its tally counts messages ``per_recipient`` (phone number)."""

    module, name = "ecrm.peers.twilio_sink", "the Twilio peer"


class PushServiceProcess(PeerProcess):
    """``ecrm.peers.push_service``; its tally counts bodies ``per_endpoint`` (``/push/{i}``) and refusals."""

    module, name = "ecrm.peers.push_service", "the push service"

    @property
    def origin(self) -> str:
        return f"http://{self.address}"


def lost_and_duplicated(counts: dict[str, int], expected: set[str]) -> tuple[int, int]:
    """Keys the peer never counted, and messages beyond one per key (strangers count as duplicates)."""
    lost = sum(1 for key in expected if counts.get(key, 0) == 0)
    duplicated = sum(count - 1 if key in expected else count for key, count in counts.items())
    return lost, duplicated
