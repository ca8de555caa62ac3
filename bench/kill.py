"""Kill an in-process `ecrm campaign launch` mid-send, then resume it: what is lost, in doubt, doubled.

Each trial seeds a fresh SQLite database with N profiles, starts the SMTP sink, runs
`ecrm campaign launch campaigns/welcome.yaml --run k` (the demo's path: no Redis), sends it SIGTERM
or SIGKILL after a random delay, reads what the database recorded against what the sink received,
then runs `ecrm campaign resume welcome --run k` and tallies again. Printed per trial:

- `delay_s`: seconds from the first message the sink received to the signal; `at`: messages the
  sink had when the launcher exited; `sent`/`queued`/`unknown`/`failed`: the deliveries' statuses
  then; `unrecorded`: messages the sink received that are not recorded as sent (in doubt: each
  must be `unknown` or still in a chunk marked in flight);
- after the resume: `missing` (never received and not in doubt: lost), `doubled` (received twice).

    python -m bench.kill -n 49536 --trials 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.peers import SinkProcess
from bench.send import CAMPAIGN, ROOT, bench_address, bench_settings, seed, settings_env
from ecrm.db import create_engine, session_factory
from ecrm.deliveries.models import Delivery
from ecrm.profiles.models import Profile


def sink_received(sink: SinkProcess) -> dict[str, int]:
    """The sink's per-recipient counts now (SIGUSR1 makes it write its stats file)."""
    before = sink.stats_file.stat().st_mtime_ns if sink.stats_file.exists() else 0
    sink.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sink.stats_file.exists() and sink.stats_file.stat().st_mtime_ns != before:
            try:
                counts: dict[str, int] = json.loads(sink.stats_file.read_text())["per_recipient"]
                return counts
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.05)
    raise RuntimeError("the sink wrote no stats")


async def statuses(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(select(Delivery.status, Profile.email)
                                         .join(Profile, Profile.id == Delivery.profile_id))
            found: dict[str, set[str]] = {}
            for status, email in rows:
                found.setdefault(str(status), set()).add(str(email))
            count = await session.scalar(select(func.count()).select_from(Delivery))
            assert count == sum(len(v) for v in found.values())
            return found
    finally:
        await engine.dispose()


def trial(args: argparse.Namespace, work: Path, sig: signal.Signals, delay: float) -> dict[str, Any]:
    db = work / "kill.db"
    db.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(seed(url, args.n))
    sink = SinkProcess(work / "sink.json")
    env = settings_env(bench_settings(url, sink.port, args, None))
    try:
        launch = ["campaign", "launch", str(CAMPAIGN), "--run", "k", "--dev"]
        launcher = subprocess.Popen([sys.executable, "-m", "ecrm", *launch], env=env, cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not sink_received(sink) and launcher.poll() is None:
            time.sleep(0.05)
        time.sleep(delay)
        launcher.send_signal(sig)
        code = launcher.wait(timeout=120)
        at = sink_received(sink)
        stopped = asyncio.run(statuses(url))
        resume = ["campaign", "resume", "welcome", "--run", "k", "--dev"]
        resumed = subprocess.run([sys.executable, "-m", "ecrm", *resume], env=env, cwd=ROOT, capture_output=True,
                                 text=True, timeout=600)
        final = sink_received(sink)
        after = asyncio.run(statuses(url))
    finally:
        sink.stop()
    in_doubt = after.get("unknown", set())
    everyone = {bench_address(i) for i in range(args.n)}
    return {"signal": sig.name, "delay_s": round(delay, 2), "exit": code, "at": sum(at.values()),
            **{k: len(stopped.get(k, ())) for k in ("sent", "queued", "unknown", "failed")},
            "unrecorded": len(set(at) - stopped.get("sent", set())),
            "resume_exit": resumed.returncode, "in_doubt": len(in_doubt),
            "missing": len(everyone - set(final) - in_doubt),
            "doubled": sum(c - 1 for c in final.values() if c > 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kill", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=49_536, help="profiles (default 49536, the issue's run)")
    parser.add_argument("--trials", type=int, default=3, help="trials per signal")
    parser.add_argument("--signals", nargs="+", default=["SIGTERM", "SIGKILL"])
    parser.add_argument("--delay", type=float, nargs=2, default=(0.0, 3.0), metavar=("MIN", "MAX"),
                        help="seconds from the first message received to the signal, drawn uniformly")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    draw = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ecrm-kill-") as tmp:
        for name in args.signals:
            for _ in range(args.trials):
                result = trial(args, Path(tmp), signal.Signals[name], draw.uniform(*args.delay))
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
