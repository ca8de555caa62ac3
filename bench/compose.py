"""Micro-benchmark of composing one personalised email, the CPU cost on the send hot path.

    python -m bench.compose [-n 30000] [--repeats 5] [--template welcome] [--dkim [--dkim-n 2000]]

Builds an `EmailComposer` over the real templates (as a send worker does) and times
`compose` over N synthetic recipients spread over en, fa and th. It prints the best of
`--repeats` runs in CPU µs per recipient (and the spread over the runs, since the machine is
shared), then the same for each stage alone: the three template renders, the MIME fill of
rendered parts, the unsubscribe token and the Message-ID.

The recipients and the warmed composer are frozen out of the garbage collector before timing:
the benchmark's own heap is not what is measured (a worker holds one chunk of recipients).

`--dkim` then times DKIM signing (`ecrm.dkim`) with a fresh RSA-2048 and Ed25519 key: the
signature alone over composed emails, and compose with signing, in CPU µs per message, over
`--dkim-n` recipients (default 2,000: RSA signing costs about a millisecond each).

`--count N` composes N recipients once, untimed, for an instruction count that does not move
with the machine's load: run it under `valgrind --tool=callgrind` for two values of N, and the
difference in instructions over the difference in N is one email's cost.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecrm.dkim.keys import generate
from ecrm.render.email import EmailComposer, RenderedEmail
from ecrm.render.environment import TemplateCatalog
from ecrm.render.mime import EmailHeaders, MimeSkeleton
from ecrm.render.recipient import Recipient
from ecrm.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("en", "fa", "th")
FIRST_NAMES = ("Sara", "Emma", None, "سارا", "สมชาย", "Jean-Luc")


def recipients(count: int) -> list[Recipient]:
    """Deterministic synthetic recipients: a third per locale, some without a first name."""
    return [
        Recipient(
            delivery_id=1_000_000 + i, profile_id=10_000 + i,
            external_id=f"p-{i}", email=f"user{i}@example.com", phone=None,
            first_name=FIRST_NAMES[i % len(FIRST_NAMES)], last_name="Doe", locale=LOCALES[i % len(LOCALES)],
            time_zone="UTC", traits={"points": (i * 37) % 25_000},
        )
        for i in range(count)
    ]


def composer(template: str, dkim: dict[str, Any] | None = None) -> EmailComposer:
    settings = load_settings(ROOT / "config" / "ecrm.yaml", environ={}, templates_dir=ROOT / "templates",
                             **({"dkim": dkim} if dkim else {}))
    return EmailComposer(settings, TemplateCatalog(settings.templates_dir), template, template)


def dkim_stages(template: str, people: Sequence[Recipient]) -> dict[str, Callable[[], object]]:
    """Per algorithm: signing alone over composed emails, and compose with signing."""
    out: dict[str, Callable[[], object]] = {}
    for kind in ("rsa", "ed25519"):
        key = generate(kind)
        domain = load_settings(ROOT / "config" / "ecrm.yaml", environ={}).email.from_address.rpartition("@")[2]
        comp = composer(template, {domain: {"selector": "bench", "algorithm": key.algorithm,
                                            "private_key": key.private_key.decode()}})
        signer = comp._dkim
        assert signer is not None
        # what the signer signs: the signed email without its signature (7bit bodies)
        unsigned = [b"From: " + comp.compose(r).data.split(b"\r\nFrom: ", 1)[1] for r in people]
        out[f"dkim {key.algorithm} sign"] = each(signer.sign, unsigned)
        out[f"compose + {key.algorithm}"] = each(comp.compose, people)
    return out


def best_of(repeats: int, count: int, run: Callable[[], object]) -> tuple[float, float]:
    """(best, worst) CPU µs per item over `repeats` runs of `run` (which handles `count` items).

    CPU time of this process, not wall time: other processes on a shared machine steal the CPU,
    which inflates wall time but not (much) the CPU the work itself needs."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append((time.process_time() - start) / count * 1e6)
    return min(times), max(times)


def each(step: Callable[[Any], object], items: Sequence[Any]) -> Callable[[], None]:
    """A run of `step` over `items` that keeps no result alive (a worker keeps one chunk)."""
    def run() -> None:
        for item in items:
            step(item)
    return run


MimeJob = tuple[MimeSkeleton, RenderedEmail, EmailHeaders]


def mime_job(comp: EmailComposer, person: Recipient, rendered: RenderedEmail) -> MimeJob:
    """(MIME skeleton, rendered parts, headers): what the MIME stage fills for one recipient."""
    unsubscribe = f"<{rendered.unsubscribe_url}>"
    headers = EmailHeaders(person.email or "", rendered.subject, "<1.abc@shop.example>", unsubscribe)
    return comp.variant(person.locale).skeleton, rendered, headers


def stages(comp: EmailComposer, people: Sequence[Recipient]) -> dict[str, Callable[[], object]]:
    """One callable per stage, each over every recipient."""
    jobs = [mime_job(comp, r, comp.render(r)) for r in people]
    signer, ids = comp._signer, comp.message_ids
    return {
        "compose": each(comp.compose, people),
        "  render (3 parts + token)": each(comp.render, people),
        "  mime": each(lambda job: job[0].build(job[2], job[1].text, job[1].html), jobs),
        "  unsubscribe token": each(lambda r: signer.sign(r.delivery_id, r.profile_id), people),
        "  message-id": each(lambda r: ids.make(r.delivery_id), people),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=30_000, help="recipients per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per stage; the best is reported")
    parser.add_argument("--template", default="welcome")
    parser.add_argument("--dkim", action="store_true", help="also time DKIM signing, RSA-2048 and Ed25519")
    parser.add_argument("--dkim-n", type=int, default=2_000, help="recipients per timed DKIM run")
    parser.add_argument("--count", type=int, help="compose this many recipients once, untimed (for valgrind)")
    args = parser.parse_args(argv)
    comp, people = composer(args.template), recipients(args.count or args.n)
    for person in people[: len(LOCALES)]:
        comp.compose(person)  # compile every locale's parts before timing
    if args.count:
        for person in people:
            comp.compose(person)
        return
    gc.collect()
    gc.freeze()  # the 30,000 recipients would otherwise make each full collection cost more than compose
    print(f"{args.n} recipients ({', '.join(LOCALES)}), best of {args.repeats}, µs per recipient")
    for name, run in stages(comp, people).items():
        best, worst = best_of(args.repeats, args.n, run)
        print(f"{name:<28} {best:7.2f}   (worst {worst:.2f})")
    if args.dkim:
        signed = people[: args.dkim_n]
        print(f"{len(signed)} recipients, DKIM (relaxed/relaxed, dkimpy), µs per message")
        for name, run in dkim_stages(args.template, signed).items():
            best, worst = best_of(args.repeats, len(signed), run)
            print(f"{name:<28} {best:7.2f}   (worst {worst:.2f})")


if __name__ == "__main__":
    main()
