"""The console in German (design 18.7): every string the templates mark is in the one catalog,
so are the words shown from the server's state and the fixed messages; the language comes from
the switch's cookie, else Accept-Language by quality, else English."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cairn.replication.status import State
from cairn.server.adminops import Actor
from cairn.server.app import create_app, open_services
from cairn.server.context import Settings
from cairn.server.jobresults import OUTCOMES
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.console import mount_console
from cairn.web.i18n import COOKIE, ENVIRONMENTS, GERMAN, MESSAGES, language_of
from cairn.web.staleness import Staleness


def marked_strings() -> set[str]:
    env = ENVIRONMENTS["en"]
    found: set[str] = set()
    folder = resources.files("cairn.web").joinpath("templates")
    for entry in folder.iterdir():
        if entry.name.endswith(".html"):
            extract = env.extract_translations  # type: ignore[attr-defined]  # the i18n ext adds it
            for _line, _function, message in extract(entry.read_text()):
                if isinstance(message, str):
                    found.add(message)
    return found


def test_every_marked_string_has_its_german() -> None:
    marked = marked_strings()
    assert len(marked) > 60  # the extraction found the templates' strings
    assert sorted(marked - GERMAN.keys()) == []


def test_the_words_from_the_state_and_the_messages_have_their_german() -> None:
    words = {
        *(s.value for s in Staleness),
        *OUTCOMES,
        *(s.value for s in State),
        *(r.value for r in ConsoleRole),
        "never",
        "none",
        *MESSAGES,
    }
    assert sorted(words - GERMAN.keys()) == []


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "de-DE,de;q=0.9,en;q=0.8", "de"),
        (None, "en-GB,en;q=0.9,de;q=0.8", "en"),
        (None, "fr-FR,fr;q=0.9,de;q=0.5", "de"),
        (None, "de;q=0.2,en;q=0.7", "en"),
        (None, "de;q=0,fr", "en"),
        (None, "de;q=bogus,en", "en"),
        ("de", "en", "de"),
        ("xx", "de", "de"),
    ],
)
def test_the_language_is_the_cookie_else_the_browsers(
    cookie: str | None, header: str | None, expected: str
) -> None:
    assert language_of(cookie, header) == expected


def test_pages_in_german(tmp_path: Path) -> None:
    services = open_services(Settings(data=tmp_path / "data"))
    client = TestClient(
        mount_console(create_app(services), services), base_url="https://testserver"
    )
    german = {"accept-language": "de-DE,de;q=0.9"}
    setup = client.get("/console/", headers=german)
    assert setup.status_code == 503 and '<html lang="de">' in setup.text
    assert "Die Konsole ist noch nicht geöffnet" in setup.text
    services.admin.add_user(Actor("t"), ConsoleUser("a", ConsoleRole.SERVER_ADMIN, None), "pw")
    form = client.get("/console/sign-in", headers=german).text
    assert '<label for="name">Benutzername</label>' in form
    switched = client.get("/console/language", params={"to": "en"}, follow_redirects=False)
    assert switched.status_code == 303 and switched.cookies[COOKIE] == "en"
    assert '<html lang="en">' in client.get("/console/sign-in", headers=german).text
    ignored = TestClient(
        mount_console(create_app(services), services), base_url="https://testserver"
    )
    kept = ignored.get("/console/language", params={"to": "xx"}, follow_redirects=False)
    assert kept.status_code == 303 and COOKIE not in kept.cookies
