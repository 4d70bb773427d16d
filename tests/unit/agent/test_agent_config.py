"""The agent's configuration: every key checked, every mistake named with file, key and what is
allowed; the documented example parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.agent.config import UnknownJob, find_job, load_config
from cairn.agent.spec import At, Continuous, Cron, Every, WhenReachable
from cairn.config.tomltable import ConfigError
from cairn.notify.message import EmailSpec, EventKind, WebhookSpec

EXAMPLE = Path(__file__).parents[3] / "examples" / "agent.toml"

GOOD_JOB = """
[[job]]
name = "home"
repository = "/srv/repo"
paths = ["/home"]
schedule = { every = "1h" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_documented_example_parses_with_every_option() -> None:
    spec = load_config(EXAMPLE)
    assert spec.jitter_s == 300
    assert spec.upload_limit == 20 * 1024 * 1024
    assert spec.upload_windows[0].limit == 2 * 1024 * 1024
    assert spec.priority == "low"
    names = [j.name for j in spec.jobs]
    assert len(names) == len(set(names)) >= 5
    schedules = {type(j.schedule) for j in spec.jobs}
    assert schedules == {Every, Cron, At, Continuous, WhenReachable}
    home = find_job(spec, "home")
    assert home.retries == 3
    assert home.timeout_s == 12 * 3600
    assert home.upload_limit == 5 * 1024 * 1024
    assert [h.when for h in home.hooks] == ["before", "after", "failure", "always"]
    assert home.dumps[0].kind == "postgresql"
    assert {type(c) for c in spec.channels} == {EmailSpec, WebhookSpec}
    email = next(c for c in spec.channels if isinstance(c, EmailSpec))
    assert (email.smtp_host, email.smtp_port, email.security) == ("smtp.example", 587, "starttls")
    assert EventKind.REPORT in email.on
    assert spec.alerts.silence_after_s == 26 * 3600
    assert spec.alerts.report_every == "daily"


def test_defaults_fill_what_is_left_out(tmp_path: Path) -> None:
    spec = load_config(write(tmp_path, GOOD_JOB))
    job = spec.jobs[0]
    assert job.schedule == Every(3600)
    assert (job.retries, job.retry_backoff_s, job.suspended) == (3, 60.0, False)
    assert spec.state == Path("/var/lib/cairn-agent")
    assert spec.channels == ()


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        # unknown keys, at every level
        ("[agent]\nstat = '/x'\n" + GOOD_JOB, "agent.stat", "allowed here: state"),
        ("[agnet]\n" + GOOD_JOB, "agnet", "allowed here: agent, job"),
        (GOOD_JOB + "exclud = ['*.tmp']\n", "job[home].exclud", "allowed here: name"),
        (
            GOOD_JOB.replace('{ every = "1h" }', '{ every = "1h", jitter = "5m" }'),
            "job[home].schedule.jitter",
            "allowed here: every",
        ),
        # bad values
        ("[agent]\njitter = 'soon'\n" + GOOD_JOB, "agent.jitter", "a duration such as 90s"),
        ("[agent]\nupload_limit = 'fast'\n" + GOOD_JOB, "agent.upload_limit", "a rate such as"),
        ("[agent]\npriority = 'idle'\n" + GOOD_JOB, "agent.priority", "one of low, normal"),
        ("[agent]\nstate = 'var/x'\n" + GOOD_JOB, "agent.state", "must be absolute"),
        (GOOD_JOB.replace('"1h"', '"1 hour"'), "job[home].schedule.every", "a duration"),
        (GOOD_JOB.replace('"1h"', '"0s"'), "job[home].schedule.every", "more than 0"),
        (GOOD_JOB + "retries = -1\n", "job[home].retries", "from 0 to 100"),
        (GOOD_JOB + "retries = 'many'\n", "job[home].retries", "a whole number"),
        (GOOD_JOB + "suspended = 'yes'\n", "job[home].suspended", "true or false"),
        (GOOD_JOB.replace('["/home"]', '["home"]'), "job[home].paths", "must be absolute"),
        (GOOD_JOB.replace('paths = ["/home"]\n', ""), "job[home].paths", "is required"),
        (GOOD_JOB.replace('repository = "/srv/repo"\n', ""), "job[home].repository", "required"),
        (GOOD_JOB.replace('"home"', '"my home"'), "job[0].name", "letters, digits"),
        (GOOD_JOB + GOOD_JOB, "job", "two jobs are called 'home'"),
        # schedules
        (GOOD_JOB.replace('{ every = "1h" }', '{ cron = "61 * * * *" }'), "schedule.cron", ""),
        (GOOD_JOB.replace('{ every = "1h" }', '{ cron = "* * *" }'), "schedule.cron", "five"),
        (
            GOOD_JOB.replace('{ every = "1h" }', '{ at = ["25:00"] }'),
            "schedule.at",
            "a local time HH:MM",
        ),
        (
            GOOD_JOB.replace('{ every = "1h" }', '{ at = ["02:00"], days = ["monday"] }'),
            "schedule.days",
            "one of mon, tue",
        ),
        (
            GOOD_JOB.replace('{ every = "1h" }', '{ every = "1h", cron = "* * * * *" }'),
            "job[home].schedule",
            "exactly one of",
        ),
        (GOOD_JOB.replace('{ every = "1h" }', "{}"), "job[home].schedule", "exactly one of"),
        (GOOD_JOB.replace('schedule = { every = "1h" }\n', ""), "job[home].schedule", "required"),
        (
            GOOD_JOB.replace('{ every = "1h" }', "{ continuous = false }"),
            "schedule.continuous",
            "only `continuous = true`",
        ),
        # hooks, dumps, notifications, alerts
        (
            GOOD_JOB + "[[job.hook]]\nwhen = 'later'\nrun = ['true']\n",
            "job[home].hook[0].when",
            "one of before, after, failure, always",
        ),
        (GOOD_JOB + "[[job.hook]]\nwhen = 'before'\nrun = []\n", "hook[0].run", "a list of"),
        (
            GOOD_JOB + "[[job.dump]]\nkind = 'oracle'\ndatabase = 'x'\n",
            "job[home].dump[0].kind",
            "one of postgresql, mysql",
        ),
        (
            GOOD_JOB + "[[job.dump]]\nkind = 'mysql'\ndatabase = 'x'\nport = 70000\n",
            "dump[0].port",
            "1-65535",
        ),
        (
            GOOD_JOB + "[[notify]]\nkind = 'email'\nsmtp = 'mail'\nfrom = 'a@b'\nto = ['c@d']\n",
            "notify[0].smtp",
            "HOST:PORT",
        ),
        (
            GOOD_JOB + "[[notify]]\nkind = 'webhook'\nurl = 'ftp://x'\n",
            "notify[0].url",
            "http:// or https://",
        ),
        (
            GOOD_JOB + "[[notify]]\nkind = 'webhook'\nurl = 'http://x'\non = ['fail']\n",
            "notify[0].on",
            "one of failure, recovery",
        ),
        (GOOD_JOB + "[alerts]\nreport = { every = 'hourly' }\n", "alerts.report.every", "daily"),
        (GOOD_JOB + "[alerts]\nsilence = '1d'\n", "alerts.silence", "allowed here"),
        (
            "[agent]\nupload_windows = [{ from = '8:00', to = '18:00', limit = '1M' }]\n"
            + GOOD_JOB,
            "agent.upload_windows[0].from",
            "HH:MM",
        ),
    ],
)
def test_each_mistake_is_named_with_file_key_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert key in message
    assert allowed in message


def test_a_file_that_is_not_toml_or_missing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[agent\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nowhere.toml")


def test_schedules_of_every_kind(tmp_path: Path) -> None:
    cases = {
        '{ cron = "15 2 * * *" }': Cron("15 2 * * *"),
        '{ at = ["14:30", "02:00"], days = ["Mon", "thu"] }': At(
            ("02:00", "14:30"), ("mon", "thu")
        ),
        '{ continuous = true, debounce = "10s" }': Continuous(10.0, 600.0),
        '{ when_reachable = true, every = "6h", probe = "1m" }': WhenReachable(6 * 3600, 60.0),
    }
    for text, expected in cases.items():
        spec = load_config(write(tmp_path, GOOD_JOB.replace('{ every = "1h" }', text)))
        assert spec.jobs[0].schedule == expected


def test_an_unknown_job_name_lists_the_known_ones(tmp_path: Path) -> None:
    spec = load_config(write(tmp_path, GOOD_JOB))
    with pytest.raises(UnknownJob, match="jobs: home"):
        find_job(spec, "hom")
