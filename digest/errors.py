"""Errors a user can act on. Each carries one readable line; the CLI prints it
(never a traceback) and exits with the class's exit code."""

import re
from urllib.parse import urlsplit, urlunsplit


class DigestError(Exception):
    """Base of every error the CLI reports as one line. ``exit_code`` is the
    process exit status documented in README.md."""

    exit_code = 1


class SettingsError(DigestError):
    """A setting (environment, .env or digest.toml) has a wrong value."""

    exit_code = 2


class SourceError(DigestError):
    """One source (a file, folder or URL) could not be read. Readers raise it;
    the caller turns it into a warning and goes on with the other sources."""


class ProviderAuthError(DigestError):
    """The provider refused our credentials or our sender (SendGrid 401/403,
    SMTP authentication failure). The whole run stops at once."""

    exit_code = 3


class LedgerBusyError(DigestError):
    """Another send holds the ledger (EX_TEMPFAIL from sysexits.h)."""

    exit_code = 75


class UsageError(DigestError):
    """A value given on the command line (a date, a duration, a tag) is wrong."""

    exit_code = 2


def without_password(url: str) -> str:
    """``url`` without its password (``user:secret@`` becomes ``user@``),
    for messages and logs; a string that is not even a URL loses whatever
    stands before an ``@``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: whatever stands before an @ may be a password
        return re.sub(r"//[^/?#]*@", "//***@", url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username}@{host}" if parts.username else host
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]  # as written: a malformed one too
    if port:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
