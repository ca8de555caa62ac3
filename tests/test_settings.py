"""Settings: file, then environment, validated with the key and its source named."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecrm import priority
from ecrm.errors import ConfigError
from ecrm.settings import load_settings


def test_the_environment_overrides_the_file_including_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "ecrm.yaml"
    path.write_text("smtp:\n  host: mail.example\n  port: 25\nsend:\n  batch_size: 100\n")
    settings = load_settings(path, environ={"ECRM_SMTP__PORT": "2525", "ECRM_REDIS_URL": "redis://127.0.0.1:6379"})
    assert (settings.smtp.host, settings.smtp.port, settings.send.batch_size) == ("mail.example", 2525, 100)
    assert settings.redis_url == "redis://127.0.0.1:6379"


def test_an_empty_redis_url_means_jobs_run_in_process() -> None:
    assert load_settings(Path("/nonexistent"), environ={"ECRM_REDIS_URL": ""}).redis_url is None


@pytest.mark.parametrize(("text", "environ", "message"), [
    ("smtp:\n  port: 99999\n", {}, "smtp.port ({path}:2): Input should be less than or equal to 65535"),
    ("smtp:\n  hots: x\n", {}, "smtp.hots ({path}:2): unknown setting (check its spelling)"),
    ("", {"ECRM_DATABASE_URL": "mysql://x"}, "database_url (env ECRM_DATABASE_URL): Value error, expected a"),
    ("", {"ECRM_SMTPP": "x"}, "ECRM_SMTPP (environment): unknown setting"),
    ("- a list\n", {}, "(file) ({path}): expected a mapping of settings"),
    ("", {"ECRM_SEGMENT_RANK_MINUTES": "-1"},
     "segment_rank_minutes (env ECRM_SEGMENT_RANK_MINUTES): Input should be greater than or equal to 0"),
])
def test_a_bad_setting_names_the_key_and_where_it_came_from(tmp_path: Path, text: str, environ: dict[str, str],
                                                           message: str) -> None:
    path = tmp_path / "ecrm.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    assert str(caught.value).startswith(message.format(path=path)), str(caught.value)


def test_the_campaigns_worker_lowers_its_cpu_priority_by_campaign_nice() -> None:
    """In a child process (niceness only goes up): the configured amount, and 0 keeps it."""
    script = ("import os; from pathlib import Path; from ecrm.settings import load_settings; "
              "from ecrm.worker import yield_cores; before = os.nice(0); "
              "s = load_settings(Path('/nonexistent'), environ={'ECRM_SEND__CAMPAIGN_NICE': '{n}'}); "
              "print(yield_cores(s) - before)")
    for nice in (5, 0):
        done = subprocess.run([sys.executable, "-c", script.replace("{n}", str(nice))], capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip() == str(nice)


def _in_child(script: str, **environ: str) -> str:
    """What a child process prints (priorities only go one way in a process; tests keep theirs)."""
    prelude = ("import logging, os, sys; from pathlib import Path; from ecrm import priority; "
               "from ecrm.settings import load_settings; "
               "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(message)s'); "
               f"s = load_settings(Path('/nonexistent'), environ={environ!r}); ")
    return subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True,
                          check=True).stdout


def test_the_campaigns_worker_can_yield_the_cores_as_sched_idle_or_sched_batch() -> None:
    for policy, expected in (("idle", os.SCHED_IDLE), ("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)):
        printed = _in_child("from ecrm.worker import yield_cores; yield_cores(s); print(os.sched_getscheduler(0))",
                            ECRM_SEND__CAMPAIGN_POLICY=policy)
        assert printed.split()[-1] == str(expected), policy


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root or CAP_SYS_NICE")
def test_the_transactional_worker_raises_its_priority_to_transactional_nice_when_allowed() -> None:
    printed = _in_child("print(priority.claim_cores(s.send.transactional_nice), os.nice(0))",
                        ECRM_SEND__TRANSACTIONAL_NICE="-3")
    assert printed.split() == ["-3", "-3"]


def test_without_permission_to_raise_it_the_priority_stays_and_one_line_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(which: int, who: int, value: int) -> None:
        raise PermissionError(1, "Operation not permitted")  # what the kernel answers without CAP_SYS_NICE

    monkeypatch.setattr(os, "setpriority", refuse)
    with caplog.at_level(logging.INFO, logger="ecrm.priority"):
        assert priority.claim_cores(-5) == os.nice(0)
    assert [r.getMessage() for r in caplog.records] == [
        f"not allowed to raise the CPU priority to nice -5 (needs root or CAP_SYS_NICE); running at nice {os.nice(0)}"]
