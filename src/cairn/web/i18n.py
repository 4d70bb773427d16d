"""The console's languages (design 18.7): English, and German from the one catalog below.

Templates mark every string with `_()` (Jinja2's i18n extension); the English text is the key,
so an English page needs no catalog and a string missing from the German one shows in English
rather than not at all (a test finds every marked string in the templates and fails on one the
catalog lacks). The words the pages show from the server's state — an outcome, a staleness, a
target's state, a role — go through `_()` too and are in the catalog; names, messages from
agents and error details are shown as they are.

The language: the `cairn_lang` cookie the switch in the header sets, else the browser's
`Accept-Language` (the first of its languages the console has, by quality), else English.
"""

from __future__ import annotations

import gettext

from jinja2 import Environment, PackageLoader, select_autoescape

LANGUAGES = (("en", "English"), ("de", "Deutsch"))
CODES = frozenset(code for code, _ in LANGUAGES)
COOKIE = "cairn_lang"
ONE_YEAR_S = 365 * 24 * 3600

ROLE_REFUSED = "your role may not open this page"
FORM_TOO_LARGE = "the form is too large"
FORGED_FORM = (
    "CAIRN-E154: the form's security token is missing or out of date; "
    "open the page again and resend it"
)
SIGN_IN_REFUSED = "CAIRN-E153: the user name or the password is wrong"
MESSAGES = (ROLE_REFUSED, FORM_TOO_LARGE, FORGED_FORM, SIGN_IN_REFUSED)
"""The fixed messages the console's code (not its templates) shows; the pages pass them through
`_()`. Messages with a name in them (E155, E156, the throttle's) are shown in English."""

GERMAN: dict[str, str] = {
    # frame and sign-in
    "Cairn console": "Cairn-Konsole",
    "Dashboard": "Übersicht",
    "Alerts": "Warnungen",
    "Audit log": "Prüfprotokoll",
    "Sign out": "Abmelden",
    "Sign in": "Anmelden",
    "User name": "Benutzername",
    "Password": "Passwort",
    "Refused": "Abgelehnt",
    "Back to the console": "Zurück zur Konsole",
    "Set the admin password": "Admin-Passwort setzen",
    "The console is not open yet": "Die Konsole ist noch nicht geöffnet",
    "No server administrator has been set up, so no one can sign in. On the server, run:": (
        "Es ist noch kein Server-Administrator eingerichtet, daher kann sich niemand anmelden. "
        "Führen Sie auf dem Server aus:"
    ),
    "It asks for the password (or give --password-file FILE). Then reload this page.": (
        "Der Befehl fragt nach dem Passwort (oder geben Sie --password-file DATEI an). Laden "
        "Sie danach diese Seite neu."
    ),
    # roles
    "server-admin": "Server-Admin",
    "tenant-admin": "Mandanten-Admin",
    "read-only": "nur lesen",
    # tables
    "Machines": "Rechner",
    "Machine": "Rechner",
    "Job": "Auftrag",
    "Tenant": "Mandant",
    "Tenants": "Mandanten",
    "Schedule": "Zeitplan",
    "Staleness": "Aktualität",
    "Last backup": "Letzte Sicherung",
    "Outcome": "Ergebnis",
    "Last success": "Letzter Erfolg",
    "Message": "Meldung",
    "next due": "nächste fällig",
    "Used": "Belegt",
    "Quota": "Kontingent",
    "Use of quota": "Kontingent genutzt",
    "Replication targets": "Replikationsziele",
    "Replication": "Replikation",
    "Target": "Ziel",
    "State": "Zustand",
    "Lag": "Rückstand",
    "Waiting to be sent": "Noch zu senden",
    "No machine has reported a backup yet.": "Noch kein Rechner hat eine Sicherung gemeldet.",
    "No replication target.": "Kein Replikationsziel.",
    "Stored": "Gespeichert",
    "Snapshots": "Snapshots",
    "No machine of this tenant has reported a backup yet.": (
        "Noch kein Rechner dieses Mandanten hat eine Sicherung gemeldet."
    ),
    "Last backups": "Letzte Sicherungen",
    "Arrived": "Eingegangen",
    "Size": "Größe",
    "No snapshot has arrived yet.": "Noch kein Snapshot ist eingegangen.",
    "No replication target takes this tenant.": "Kein Replikationsziel übernimmt diesen Mandanten.",
    # alerts
    "Nothing needs you now.": "Zurzeit ist nichts zu tun.",
    "Machines that need a look": "Rechner, die Aufmerksamkeit brauchen",
    "None: every machine is on time and its last run succeeded.": (
        "Keiner: Jeder Rechner ist pünktlich und sein letzter Lauf war erfolgreich."
    ),
    "Replication targets that need a look": "Replikationsziele, die Aufmerksamkeit brauchen",
    "Failures in a row": "Fehlschläge in Folge",
    "Last error": "Letzter Fehler",
    "None: every target is up to date.": "Keines: Jedes Ziel ist auf dem neuesten Stand.",
    # audit log
    "Chain intact: %(count)s entries checked.": "Kette unversehrt: %(count)s Einträge geprüft.",
    "Chain BROKEN at entry %(entry)s, after %(count)s intact entries: run cairn server audit.": (
        "Kette GEBROCHEN bei Eintrag %(entry)s, nach %(count)s unversehrten Einträgen: "
        "führen Sie cairn server audit aus."
    ),
    "Verify the chain": "Kette prüfen",
    "every tenant": "alle Mandanten",
    "Kind": "Art",
    "every kind": "alle Arten",
    "Filter": "Filtern",
    "Time": "Zeit",
    "Actor": "Urheber",
    "Address": "Adresse",
    "No entry matches.": "Kein Eintrag passt.",
    "Newest": "Neueste",
    "Older entries": "Ältere Einträge",
    # words from the server's state (staleness, outcomes, target states, absent values)
    "on-time": "pünktlich",
    "late": "verspätet",
    "missed": "ausgelassen",
    "never": "nie",
    "unscheduled": "ohne Zeitplan",
    "success": "Erfolg",
    "warning": "Warnung",
    "failure": "Fehler",
    "interrupted": "unterbrochen",
    "skipped": "übersprungen",
    "ok": "ok",
    "lagging": "im Rückstand",
    "failing": "fehlerhaft",
    "paused": "pausiert",
    "none": "keines",
    # messages
    ROLE_REFUSED: "Ihre Rolle darf diese Seite nicht öffnen",
    FORM_TOO_LARGE: "Das Formular ist zu groß",
    FORGED_FORM: (
        "CAIRN-E154: Das Sicherheitstoken des Formulars fehlt oder ist veraltet; öffnen Sie "
        "die Seite erneut und senden Sie es noch einmal"
    ),
    SIGN_IN_REFUSED: "CAIRN-E153: Benutzername oder Passwort ist falsch",
}
"""Every string the German pages show, keyed by its English text: the one catalog."""


class _Catalog(gettext.NullTranslations):
    def __init__(self, strings: dict[str, str]) -> None:
        super().__init__()
        self._strings = strings

    def gettext(self, message: str) -> str:
        return self._strings.get(message, message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return self.gettext(msgid1 if n == 1 else msgid2)


def _environment(strings: dict[str, str]) -> Environment:
    env = Environment(
        loader=PackageLoader("cairn.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(_Catalog(strings), newstyle=True)  # type: ignore[attr-defined]
    return env


ENVIRONMENTS = {"en": _environment({}), "de": _environment(GERMAN)}
"""One environment a language, made once: a render never changes shared state."""


def language_of(cookie: str | None, accept_language: str | None) -> str:
    if cookie in CODES:
        return str(cookie)
    return _accepted(accept_language or "")


def _accepted(header: str) -> str:
    """The first language of `Accept-Language` the console has, by quality; else English."""
    choices = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        code = tag.strip().lower().split("-")[0]
        if code in CODES and quality > 0:
            choices.append((-quality, position, code))
    return min(choices)[2] if choices else "en"
