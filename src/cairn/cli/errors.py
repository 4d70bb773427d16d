"""Exit codes and error codes: the CLI's contract with scripts (documented in docs/errors.md)."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.agent.config import UnknownJob
from cairn.agent.dumps import DumpFailed
from cairn.agent.history import StateError
from cairn.agent.runner import JobBusy
from cairn.backends.errors import (
    AuthenticationFailed,
    BackendError,
    CertificateMismatch,
    ContainerMissing,
    ForeignLocation,
    FtpSetupError,
    GarbledAnswer,
    HostKeyUnknown,
    KnownServersUnusable,
    ListingIncomplete,
    MalformedAnswer,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RoleForbidden,
    ServerNotPrimary,
    ServerUnreachable,
    StaleEpochRefused,
    StorageFull,
    StorageLoginRefused,
    StorageTlsFailed,
    Throttled,
    TokenExpired,
    TransientBackendError,
)
from cairn.backends.location import (
    BadFingerprint,
    MissingToken,
    SftpPasswordFileUnreadable,
    TokenFileUnreadable,
)
from cairn.backup.archiver import NoSourcePath
from cairn.chunking.fastcdc import ChunkerUnavailable
from cairn.cli.snapshotpaths import SnapshotPathError
from cairn.config.tomltable import ConfigError
from cairn.core.errors import CairnError, FormatError, IntegrityError, UnsupportedFormat
from cairn.core.patterns import PatternError
from cairn.failover.errors import (
    LeaseHeld,
    StandbyUsage,
    WitnessRequestBad,
    WitnessSetupError,
    WitnessTokenRefused,
    WitnessUnreachable,
)
from cairn.notify.errors import (
    NotifyAuthFailed,
    NotifyError,
    NotifyRejected,
    NotifyTlsError,
    NotifyUnreachable,
)
from cairn.peers.errors import (
    AlreadyPaired,
    BadInvitationCode,
    InvitationExpired,
    InvitationUnknown,
    InvitationUsed,
    NoSuchPeer,
    NotEnoughCopies,
    PeerCertificateChanged,
    PeerFolderError,
    PeerUnreachable,
)
from cairn.replication.check import TargetCheckFailed, TargetLocationMissing, TargetRefused
from cairn.replication.credentials import CredentialsFileUnusable
from cairn.replication.db import ReplicationDbError
from cairn.replication.errors import (
    CopiedObjectsDamaged,
    NoServerState,
    ServerIdNeeded,
    SourceLooksEmpty,
    StateSealError,
    TargetCorrupt,
    WrongStatePassphrase,
)
from cairn.replication.layout import ServerIdUnusable
from cairn.replication.targets import BadTargetSetting, NoSuchTarget, TargetExists
from cairn.replication.targets import TargetError as ReplicationTargetError
from cairn.repository.errors import (
    KeyManagementError,
    NotARepository,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
    WrongPassword,
)
from cairn.repository.locks import LeaseExpired
from cairn.repository.prune import PruneRefused, PruneRunning
from cairn.repository.repair import RepairRefused
from cairn.restore.damage import DamagedFiles
from cairn.restore.fswriter import TargetError
from cairn.restore.restorer import RestoreConflict
from cairn.server.errors import (
    AuditBehind,
    AuditBroken,
    BadRequest,
    DamageFound,
    ListenFailed,
    NoDataFolder,
    NoSuchObject,
    ServerFull,
    ServerSetupError,
)
from cairn.server.users import NoPassword, NoSuchUser, UserError
from cairn.snapshot.retention import PolicyError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A stable code, the exit status that goes with it, and what the user should do."""

    code: str
    exit: int
    hint: str


class UsageError(CairnError):
    """The command line itself is wrong."""


class NoPassphrase(CairnError):
    """No passphrase source was given and there is no terminal to ask on."""


class CheckFailed(CairnError):
    """check found damage."""


class CopyRefused(CairnError):
    """`copy` cannot go ahead: the source is the destination."""


class UnlockRefused(CairnError):
    """`unlock --remove-all` without --yes while live locks exist."""


class UnreadableListFile(CairnError):
    """A file the command line names as a list (--files-from, --exclude-file) cannot be read."""


class InputFileUnreadable(CairnError):
    """A file the user named for Cairn to read (a password file) cannot be read."""


class PasswordCommandFailed(CairnError):
    """--password-command / CAIRN_PASSWORD_COMMAND did not run, or did not succeed."""


class CacheUnusable(CairnError):
    """The cache folder named by --cache-dir or CAIRN_CACHE_DIR cannot be made or written."""


PEER_CODES: list[tuple[type[BaseException], ErrorCode]] = [
    (
        PeerFolderError,
        ErrorCode("CAIRN-E180", 180, "check --data and the settings; `cairn peer init --help`"),
    ),
    (
        InvitationUnknown,
        ErrorCode("CAIRN-E181", 181, "copy the code again, or ask the peer for a new one"),
    ),
    (InvitationUsed, ErrorCode("CAIRN-E182", 182, "ask for a new code: `cairn peer invite`")),
    (InvitationExpired, ErrorCode("CAIRN-E183", 183, "ask for a new code: `cairn peer invite`")),
    (
        PeerCertificateChanged,
        ErrorCode(
            "CAIRN-E184",
            184,
            "compare the fingerprint with what `cairn server fingerprint --data DIR/server` shows "
            "on that machine; if it was replaced on purpose, forget the peer and pair again",
        ),
    ),
    (
        PeerUnreachable,
        ErrorCode("CAIRN-E185", 185, "is `cairn peer serve` running there, and the address right?"),
    ),
    (
        NotEnoughCopies,
        ErrorCode(
            "CAIRN-E186",
            186,
            "the message names each peer and why; pair another peer, or free space on them",
        ),
    ),
    (NoSuchPeer, ErrorCode("CAIRN-E187", 187, "`cairn peer list` shows the paired peers")),
    (BadInvitationCode, ErrorCode("CAIRN-E188", 188, "copy the whole code, cairnpeer1-...")),
    (
        AlreadyPaired,
        ErrorCode("CAIRN-E189", 189, "`cairn peer list`; forget the old pairing to pair again"),
    ),
]

UNREADABLE_HINT = "check the path and its permissions: it must be a file Cairn can read"

# Most specific first: the first class that matches wins.
CODES: list[tuple[type[BaseException], ErrorCode]] = [
    *PEER_CODES,
    (
        ServerNotPrimary,
        ErrorCode("CAIRN-E163", 163, "the pair is changing primary or has none; retry soon"),
    ),
    (
        StaleEpochRefused,
        ErrorCode("CAIRN-E164", 164, "the server leads under a newer epoch; connect again"),
    ),
    (
        WitnessUnreachable,
        ErrorCode("CAIRN-E160", 160, "is the witness running, and the URL and fingerprint right?"),
    ),
    (LeaseHeld, ErrorCode("CAIRN-E161", 161, "another server holds the lease")),
    (
        WitnessTokenRefused,
        ErrorCode("CAIRN-E162", 162, "give the token file of the witness's data folder"),
    ),
    (
        WitnessSetupError,
        ErrorCode("CAIRN-E165", 165, "check the witness's --data folder and --listen address"),
    ),
    (StandbyUsage, ErrorCode("CAIRN-E166", 166, "see docs/design.md section 19")),
    (WitnessRequestBad, ErrorCode("CAIRN-E167", 167, "see docs/design.md section 19.3")),
    (
        MissingToken,
        ErrorCode("CAIRN-E067", 67, "set CAIRN_TOKEN or CAIRN_TOKEN_FILE, or pass --token-file"),
    ),
    (BadFingerprint, ErrorCode("CAIRN-E002", EXIT_USAGE, "fix CAIRN_SERVER_FINGERPRINT")),
    (TokenFileUnreadable, ErrorCode("CAIRN-E041", 41, UNREADABLE_HINT)),
    (InputFileUnreadable, ErrorCode("CAIRN-E041", 41, UNREADABLE_HINT)),
    (SftpPasswordFileUnreadable, ErrorCode("CAIRN-E041", 41, UNREADABLE_HINT)),
    (
        PasswordCommandFailed,
        ErrorCode(
            "CAIRN-E042",
            42,
            "run the command by hand: it must print the passphrase on its first line and exit 0",
        ),
    ),
    (
        CacheUnusable,
        ErrorCode(
            "CAIRN-E043", 43, "give a writable folder (--cache-dir, CAIRN_CACHE_DIR), or --no-cache"
        ),
    ),
    (
        KnownServersUnusable,
        ErrorCode(
            "CAIRN-E044",
            44,
            "fix the file's permissions, or set XDG_CONFIG_HOME to a writable folder",
        ),
    ),
    (
        ServerUnreachable,
        ErrorCode("CAIRN-E060", 60, "is the server running, and the address right? retry"),
    ),
    (
        TokenExpired,
        ErrorCode("CAIRN-E075", 75, "ask the server's admin for a new token (token add)"),
    ),
    (
        AuthenticationFailed,
        ErrorCode(
            "CAIRN-E061",
            61,
            "check which token is used (CAIRN_TOKEN, the token file); a revoked or mistyped one "
            "is refused: ask the server's admin for a new one",
        ),
    ),
    (
        RoleForbidden,
        ErrorCode(
            "CAIRN-E062",
            62,
            "use a token whose role allows it: backup (or tenant-admin) to back up, "
            "tenant-admin to forget, prune or change keys",
        ),
    ),
    (
        CertificateMismatch,
        ErrorCode(
            "CAIRN-E063",
            63,
            "ask the server's admin for its fingerprint before trusting a new one; "
            'docs/troubleshooting.md, "certificate mismatch"',
        ),
    ),
    (
        MalformedAnswer,
        ErrorCode("CAIRN-E073", 34, "a server bug: report it; upgrading the server may help"),
    ),
    (Throttled, ErrorCode("CAIRN-E064", 64, "wait a minute, then use a valid token")),
    (
        QuotaExceeded,
        ErrorCode("CAIRN-E065", 65, "forget and prune old snapshots, or ask for a larger quota"),
    ),
    (
        StorageLoginRefused,
        ErrorCode("CAIRN-E037", 37, "check the user, key, password or access key for the storage"),
    ),
    (
        HostKeyUnknown,
        ErrorCode(
            "CAIRN-E038",
            38,
            "check the fingerprint with the server's owner, then add it to known_hosts",
        ),
    ),
    (
        ContainerMissing,
        ErrorCode("CAIRN-E039", 39, "create the bucket, or fix its name in the location"),
    ),
    (
        StorageTlsFailed,
        ErrorCode("CAIRN-E105", 105, "check the address and the server's certificate (or its CA)"),
    ),
    (
        GarbledAnswer,
        ErrorCode("CAIRN-E106", 106, "check the address points at the storage server, not a proxy"),
    ),
    (
        BadTargetSetting,
        ErrorCode("CAIRN-E120", EXIT_USAGE, "see `cairn server target add --help`"),
    ),
    (
        CredentialsFileUnusable,
        ErrorCode("CAIRN-E127", 127, "chmod 600 the credentials file, or fix its path"),
    ),
    (
        NoSuchTarget,
        ErrorCode("CAIRN-E121", 121, "`cairn server target list` shows the targets"),
    ),
    (
        TargetExists,
        ErrorCode("CAIRN-E122", 122, "choose another name, or `target edit` the one there"),
    ),
    (
        TargetLocationMissing,
        ErrorCode("CAIRN-E123", 123, "make the folder, or mount the share, then add it again"),
    ),
    (
        TargetCheckFailed,
        ErrorCode(
            "CAIRN-E124",
            124,
            "the storage does not do what replication needs; see docs/troubleshooting.md",
        ),
    ),
    (
        TargetRefused,
        ErrorCode("CAIRN-E125", 125, "give a place outside the server's data folder"),
    ),
    (
        TargetCorrupt,
        ErrorCode(
            "CAIRN-E132", 132, "the target's storage damages what it holds; see troubleshooting"
        ),
    ),
    (
        SourceLooksEmpty,
        ErrorCode("CAIRN-E133", 133, "mount the data folder (or the bucket) the tenants live in"),
    ),
    (UserError, ErrorCode("CAIRN-E150", 150, "see `cairn server user add --help`")),
    (NoSuchUser, ErrorCode("CAIRN-E151", 151, "`cairn server user list` shows the users")),
    (
        NoPassword,
        ErrorCode("CAIRN-E152", 152, "give --password-file FILE, or run it on a terminal"),
    ),
    (
        WrongStatePassphrase,
        ErrorCode("CAIRN-E145", 145, "give the passphrase set with `cairn server state-key set`"),
    ),
    (
        NoServerState,
        ErrorCode("CAIRN-E146", 146, "check the location and --server-id; see troubleshooting"),
    ),
    (
        ServerIdNeeded,
        ErrorCode("CAIRN-E147", 147, "give --server-id (the 32-hex-digit folder at the target)"),
    ),
    (
        CopiedObjectsDamaged,
        ErrorCode("CAIRN-E149", 149, "the target damaged them: see docs/troubleshooting.md"),
    ),
    (
        StateSealError,
        ErrorCode("CAIRN-E148", 148, "take an older state, or check DATA/state-key"),
    ),
    (
        ReplicationDbError,
        ErrorCode("CAIRN-E126", 126, "check DATA/replication.db; upgrade Cairn if it is newer"),
    ),
    (
        ReplicationTargetError,
        ErrorCode("CAIRN-E126", 126, "check DATA/replication.db; upgrade Cairn if it is newer"),
    ),
    (
        NoDataFolder,
        ErrorCode("CAIRN-E074", 74, "check --data; `cairn server init --data DIR` makes one"),
    ),
    (
        ListenFailed,
        ErrorCode("CAIRN-E076", 76, "stop what uses the port, or choose another --listen"),
    ),
    (
        ServerFull,
        ErrorCode("CAIRN-E030", 30, "free space on the disk of the data folder it names"),
    ),
    (
        FtpSetupError,
        ErrorCode(
            "CAIRN-E111",
            111,
            "give the FTP password in CAIRN_FTP_PASSWORD_FILE or CAIRN_FTP_PASSWORD, never in "
            "the location; CAIRN_FTP_CA must name a readable PEM file",
        ),
    ),
    (ServerSetupError, ErrorCode("CAIRN-E071", 71, "fix the data folder or certificate")),
    (ServerIdUnusable, ErrorCode("CAIRN-E071", 71, "fix the data folder's server-id file")),
    (
        AuditBehind,
        ErrorCode("CAIRN-E077", 77, "the audit log misses changes; see docs/troubleshooting.md"),
    ),
    (AuditBroken, ErrorCode("CAIRN-E070", 70, "the audit log was tampered with; investigate")),
    (
        DamageFound,
        ErrorCode("CAIRN-E020", 20, "the tenant's owner runs `cairn check --repair --read-data`"),
    ),
    (BadRequest, ErrorCode("CAIRN-E002", EXIT_USAGE, "see `cairn server ACTION --help`")),
    (
        NoSuchObject,
        ErrorCode(
            "CAIRN-E072", 72, "`cairn server tenant list` and `cairn server token list` show them"
        ),
    ),
    (
        ConfigError,
        ErrorCode("CAIRN-E080", 80, "fix the configuration file it names; see docs/agent.md"),
    ),
    (
        NotifyUnreachable,
        ErrorCode("CAIRN-E101", 101, "is the mail server or webhook up, and reachable from here?"),
    ),
    (
        NotifyTlsError,
        ErrorCode("CAIRN-E102", 102, "check `security`, the port and `ca_file`; see docs/agent.md"),
    ),
    (NotifyAuthFailed, ErrorCode("CAIRN-E103", 103, "check `user` and `password_file`")),
    (NotifyRejected, ErrorCode("CAIRN-E104", 104, "check `from` / `to`, or the receiver's log")),
    (
        NotifyError,
        ErrorCode("CAIRN-E100", 100, "fix the [[notify]] entry it names; see docs/agent.md"),
    ),
    (JobBusy, ErrorCode("CAIRN-E081", 81, "another run of the job is running; wait for it")),
    (UnknownJob, ErrorCode("CAIRN-E082", 82, "use a job name from the configuration")),
    (StateError, ErrorCode("CAIRN-E083", 83, "fix the agent's state folder (permissions, disk)")),
    (UsageError, ErrorCode("CAIRN-E002", EXIT_USAGE, "see `cairn COMMAND --help`")),
    (
        UnreadableListFile,
        ErrorCode("CAIRN-E047", EXIT_USAGE, "check the file's name and permissions"),
    ),
    (
        NoSourcePath,
        ErrorCode("CAIRN-E046", 46, "check the paths: each must exist and be readable"),
    ),
    (
        PatternError,
        ErrorCode("CAIRN-E003", EXIT_USAGE, "fix the pattern; see docs/errors.md for the syntax"),
    ),
    (
        NoPassphrase,
        ErrorCode(
            "CAIRN-E011", 11, "set CAIRN_PASSWORD, or use --password-file / --password-command"
        ),
    ),
    (
        RepositoryNotFound,
        ErrorCode("CAIRN-E010", 10, "check -r / CAIRN_REPOSITORY, or create one with `cairn init`"),
    ),
    (
        WrongPassword,
        ErrorCode(
            "CAIRN-E012",
            12,
            "check the passphrase and where it comes from (CAIRN_PASSWORD, --password-file, "
            "--password-command); the passphrase of any of the repository's keys opens it",
        ),
    ),
    (
        RepositoryExists,
        ErrorCode("CAIRN-E013", 13, "choose an empty location, or use the existing repository"),
    ),
    (
        UnsupportedFormat,
        ErrorCode("CAIRN-E014", 14, "upgrade Cairn: this repository's format is newer"),
    ),
    (
        NotARepository,
        ErrorCode(
            "CAIRN-E015",
            15,
            "check -r / CAIRN_REPOSITORY: it names other files, or a repository whose config "
            "is damaged (restore the config from a copy; docs/troubleshooting.md)",
        ),
    ),
    (
        ForeignLocation,
        ErrorCode(
            "CAIRN-E015",
            15,
            "init needs a new or empty folder (one holding only lost+found is fine); "
            "choose another location",
        ),
    ),
    (SnapshotNotFound, ErrorCode("CAIRN-E016", 16, "list snapshots with `cairn snapshots`")),
    (
        SnapshotPathError,
        ErrorCode("CAIRN-E019", 19, "give an absolute path as `cairn ls SNAPSHOT` prints it"),
    ),
    (
        RestoreConflict,
        ErrorCode("CAIRN-E017", 17, "restore into an empty folder, or pass --overwrite"),
    ),
    (
        DamagedFiles,
        ErrorCode(
            "CAIRN-E023",
            23,
            "the repository lost data these files hold; every other file was given back. "
            "Restore them from another snapshot (`cairn find`) or back them up again",
        ),
    ),
    (
        TargetError,
        ErrorCode(
            "CAIRN-E024",
            24,
            "the path named cannot be written (read-only, full, not a folder, permissions): "
            "fix that, or choose another --target",
        ),
    ),
    (
        KeyManagementError,
        ErrorCode(
            "CAIRN-E018",
            18,
            "`cairn key list` shows the keys' IDs; to replace the key in use, `cairn key passwd`",
        ),
    ),
    (
        LeaseExpired,
        ErrorCode("CAIRN-E050", 50, "run the command again; what it stored is reused"),
    ),
    (
        PruneRefused,
        ErrorCode(
            "CAIRN-E051", 51, "run `cairn check`; prune deletes nothing until it can read all"
        ),
    ),
    (PruneRunning, ErrorCode("CAIRN-E052", 52, "wait for the other prune to finish")),
    (CopyRefused, ErrorCode("CAIRN-E028", 28, "give another repository as --from-repo")),
    (
        UnlockRefused,
        ErrorCode("CAIRN-E029", 29, "wait for the running sessions; their locks end by themselves"),
    ),
    (
        RepairRefused,
        ErrorCode(
            "CAIRN-E054",
            54,
            "nothing was changed: retry once the storage reads reliably and no prune or other "
            "repair runs; replace a failing disk first",
        ),
    ),
    (
        PolicyError,
        ErrorCode(
            "CAIRN-E053",
            EXIT_USAGE,
            "give at least one --keep-* rule; durations look like 7d, 2w, 1y2m",
        ),
    ),
    (
        CheckFailed,
        ErrorCode(
            "CAIRN-E020",
            20,
            "`cairn check --repair` mends what it can (with --read-data for damaged packs); "
            'docs/errors.md, "When check finds damage"',
        ),
    ),
    (
        IntegrityError,
        ErrorCode("CAIRN-E021", 21, "stored data is damaged or missing; run `cairn check`"),
    ),
    (FormatError, ErrorCode("CAIRN-E022", 21, "stored data is malformed; run `cairn check`")),
    (
        StorageFull,
        ErrorCode(
            "CAIRN-E030", 30, "free space on the repository's storage, then run the command again"
        ),
    ),
    (
        PermissionDenied,
        ErrorCode(
            "CAIRN-E031",
            31,
            "the storage refused access: check the permissions of the path in the message, "
            "or whether it is mounted read-only",
        ),
    ),
    (
        ListingIncomplete,
        ErrorCode("CAIRN-E032", 32, "the storage could not list its objects; retry later"),
    ),
    (
        TransientBackendError,
        ErrorCode("CAIRN-E033", 33, "the storage is unreachable or failing; retry later"),
    ),
    (NotFound, ErrorCode("CAIRN-E034", 21, "an object is missing from storage; run `cairn check`")),
    (
        BackendError,
        ErrorCode(
            "CAIRN-E035",
            34,
            "fix what the message names (a disk, a mount, a path), then run the command again; "
            "`cairn check` tells whether stored data was harmed",
        ),
    ),
    (
        ChunkerUnavailable,
        ErrorCode("CAIRN-E040", 40, "reinstall Cairn so its compiled dependencies load"),
    ),
    (
        DumpFailed,
        ErrorCode("CAIRN-E095", 95, "fix the [[job.dump]] the message names; see the run's log"),
    ),
    (
        CairnError,
        ErrorCode(
            "CAIRN-E001",
            EXIT_FAILURE,
            "if the message does not say what to do, report it with the CAIRN_DEBUG=1 output",
        ),
    ),
]


RUN_CODES = {"CAIRN-E084": 84, "CAIRN-E085": 85, "CAIRN-E086": 86}
"""Codes an agent's run fails with that are no exception of a layer (docs/errors.md)."""


def exit_for(code: str | None) -> int:
    """The exit status that goes with an error code (EXIT_FAILURE for an unknown one)."""
    for _cls, known in CODES:
        if known.code == code:
            return known.exit
    return RUN_CODES.get(code or "", EXIT_FAILURE)


def code_for(exc: BaseException) -> ErrorCode:
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code
    return ErrorCode(
        "CAIRN-E999",
        EXIT_FAILURE,
        "this is a bug in Cairn; please report it with CAIRN_DEBUG=1 output",
    )
