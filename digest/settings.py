"""Settings, read from (highest priority first) keyword arguments, environment
variables prefixed ``DIGEST_``, a ``.env`` file and ``digest.toml``, all in the
working directory.

List values in the environment (and .env) are written as a JSON list
(``DIGEST_SOURCES='["posts", "feeds/news.xml"]'``) or as comma-separated
values (``DIGEST_SOURCES=posts,feeds/news.xml``, one value alone too), as
Spring Boot and django-environ read list variables.
Secrets are ``SecretStr`` so that they never print. A wrong value raises
:class:`digest.errors.SettingsError` naming the setting.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import tomllib
import zoneinfo
from email import policy
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from email_validator import EmailNotValidError, validate_email
from pydantic import EmailStr, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from digest.errors import DigestError, SettingsError
from digest.moments import parse_duration

log = logging.getLogger(__name__)

CONFIG_FILE = "digest.toml"
DEFAULT_SECRET = "change-me-unsubscribe-secret"  # real sends refuse it: links signed with it can be forged


class Settings(BaseSettings):
    """Every setting of digest, with its default.

    Times are in ``timezone`` (an IANA name such as ``Europe/Paris``) unless a
    value carries its own offset. Paths are relative to the working directory.
    """

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file=CONFIG_FILE,
        # Unknown keys in digest.toml and .env are errors (load_settings names
        # them: a typo must not pass silently); the environment holds other
        # programs' variables too, so only DIGEST_* is read from it.
        extra="ignore",
    )

    # The site and its sender.
    site_name: str = "Example Digest"
    site_url: str = "https://example.org/"
    sender_email: EmailStr = "digest@example.org"
    sender_name: str | None = None  # default: site_name
    # An address, or a display name and address: '"Desk, News" <desk@example.org>'.
    reply_to: str | None = None
    postal_address: str = "Example Digest, 1 Example Street, Springfield"
    timezone: str = "UTC"

    # Sources and audience.
    sources: list[str] = Field(default_factory=lambda: ["examples"])
    subscribers: Path = Path("subscribers")
    default_list: str | None = None

    # Rendering.
    templates_dir: Path | None = None
    subject_template: str = "{site_name}: {first_title}{more}"
    preheader: str | None = None
    layout: Literal["standard", "compact"] = "standard"
    sections: list[str] = Field(default_factory=list)
    articles_per_section: int | None = Field(default=None, ge=1)
    html_budget_kb: int = Field(default=90, ge=10)
    # The CSS inliner: css-inline applies the cascade as browsers do; premailer
    # (the earlier default) does not always (see digest/inlining.py).
    inliner: Literal["css-inline", "premailer"] = "css-inline"
    # The site's logo in the header (https), its width in pixels, and a version for dark mode.
    logo_url: str | None = None
    logo_width: int = Field(default=200, ge=16, le=552)
    logo_dark_url: str | None = None
    language: str = "en"  # <html lang> of the digest (WCAG 2.2 SC 3.1.1), a BCP 47 tag
    # Where `digest archive` pages are published, the "view in browser" target
    # ({archive_url}/{issue key}.html); default {site_url}archive/.
    archive_url: str | None = None

    # Delivery.
    provider: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    outbox: Path = Path("outbox")
    # A SQLite file (one machine) or a postgresql:// URL (a ledger many sending machines share).
    ledger: Path | str = Path("digest.db")
    # One send time ("weekly monday 08:00"), or one per frequency readers choose
    # (["daily 07:30", "weekly monday 08:00", "monthly 1 09:00"]).
    schedule: str | list[str] = "weekly monday 08:00"
    not_after: str | None = None
    concurrency: int = Field(default=2, ge=1, le=16)
    # Recipients a provider answered "retryable" (throttling, 4xx SMTP replies)
    # are tried again this many more rounds in the same run, retry_delay seconds apart.
    retry_rounds: int = Field(default=3, ge=0, le=20)
    retry_delay: float = Field(default=10.0, ge=0)
    # Recipients per request (at most the provider's limit: SendGrid 1000). Smaller
    # batches mean fewer "unknown" recipients when a run is killed mid-request.
    batch_size: int = Field(default=1000, ge=1, le=1000)
    # Seconds a worker's claim on a batch holds (on a shared ledger): longer than
    # one request can take with its retries; after it, other workers call the
    # batch unknown.
    lease: float = Field(default=600.0, gt=0)

    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_categories: list[str] = Field(default_factory=lambda: ["digest"])
    sendgrid_webhook_public_key: str | None = None
    asm_group_id: int | None = None
    # Retries of one SendGrid request on 5xx and connection errors (exponential
    # backoff with jitter, starting at sendgrid_retry_wait seconds).
    sendgrid_max_tries: int = Field(default=5, ge=1, le=20)
    sendgrid_retry_wait: float = Field(default=1.0, ge=0)
    sendgrid_timeout: float = Field(default=30.0, gt=0)

    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = 30.0

    # Unsubscribe and the web app of `digest serve`.
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    # Keys being phased out: tokens they signed still verify (digest.tokens).
    previous_secret_keys: list[SecretStr] = Field(default_factory=list)
    public_url: str | None = None
    unsubscribe_mailto: str | None = None
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8025, ge=1, le=65535)
    # digest serve against hostile clients: seconds for a request's head (and
    # its body) to arrive; connections at once (more get 503).
    serve_request_timeout: float = Field(default=10.0, gt=0)
    serve_max_connections: int = Field(default=1000, ge=1)
    # SendGrid's Event Webhook: the largest batch (bytes), the oldest signed
    # timestamp taken (seconds either way), unsigned events taken without a key.
    webhook_max_body: int = Field(default=5_000_000, ge=1024)
    webhook_max_age: float = Field(default=300.0, gt=0)
    webhook_allow_unsigned: bool = False

    # Fetching feeds over http(s): a total deadline per feed (seconds), the
    # largest decoded body (bytes), and whether loopback, private, link-local
    # and multicast addresses may be fetched (intranets, tests).
    feed_timeout: float = Field(default=30.0, gt=0)
    feed_max_bytes: int = Field(default=20_000_000, ge=1024)
    feed_allow_private: bool | list[str] = False

    # Sign-up with double opt-in (GET/POST /subscribe, /confirm of `digest serve`).
    signup_list: str | None = None  # the list confirmed readers join; default: default_list, else the only list
    confirm_max_age: str = "48h"  # how long a confirmation link works
    consent_record_ip: bool = False  # keep the IP address a sign-up was confirmed from, with the consent
    welcome_message: bool = False  # send welcome.html.j2/.txt.j2 once a reader confirms
    signup_client_limit: int = Field(default=100, ge=0)  # sign-up posts per client address per hour (0: no limit)
    # Of readers whose row and choices name none; unset: the schedule's cadence
    # when it names one, else weekly.
    default_frequency: Literal["daily", "weekly", "monthly"] | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _EnvLists(settings_cls),
            _DotEnvLists(settings_cls),
            TomlConfigSettingsSource(settings_cls),
        )

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger(cls, value: object) -> object:
        # A file is a Path; a URL stays text (Path() would fold its "//").
        text = os.fspath(value) if isinstance(value, os.PathLike) else value
        if isinstance(text, str) and not text.startswith(("postgresql://", "postgres://")):
            return Path(text)
        return text

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {shown(value)} (e.g. 'Europe/Paris')") from None
        return value

    @model_validator(mode="after")
    def _sender_name_defaults_to_site_name(self) -> Settings:
        if not self.sender_name:
            self.sender_name = self.site_name
        return self

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "\r" in value or "\n" in value:
            raise ValueError("may not contain a line break")
        header = policy.default.header_factory("Reply-To", value.strip())
        addresses = header.addresses
        if len(addresses) != 1 or header.defects or not addresses[0].domain:
            raise ValueError('needs one address like desk@example.org or "Desk, News" <desk@example.org>')
        try:
            validate_email(addresses[0].addr_spec, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"{addresses[0].addr_spec!r} is not a usable address ({exc})") from None
        return str(addresses[0])  # quoted where RFC 5322 needs it: "Desk, News" <desk@example.org>

    @property
    def reply_to_parts(self) -> tuple[str, str] | None:
        """``reply_to`` as (display name or "", address), or None when unset."""
        if not self.reply_to:
            return None
        address = policy.default.header_factory("Reply-To", self.reply_to).addresses[0]
        return address.display_name, address.addr_spec

    @field_validator("sendgrid_api_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A key read from a file often ends in a newline; an HTTP header cannot hold it.
        key = value.get_secret_value().strip() if value is not None else ""
        if not key:
            return None
        if not key.isascii() or not key.isprintable() or " " in key:
            raise ValueError("must be one line of printable ASCII (check where it was copied from)")
        return SecretStr(key)

    @field_validator("not_after", "confirm_max_age")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except DigestError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | list[str]) -> str | list[str]:
        from digest.schedule import parse_schedules

        try:
            parse_schedules(value)
        except DigestError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value

    @property
    def frequency_default(self) -> str:
        """The frequency of readers who chose none: ``default_frequency``,
        else the cadence of a ``schedule`` of one entry, else weekly."""
        if self.default_frequency:
            return self.default_frequency
        entries = [self.schedule] if isinstance(self.schedule, str) else self.schedule
        return entries[0].split()[0].lower() if len(entries) == 1 else "weekly"

    @field_validator("logo_url", "logo_dark_url")
    @classmethod
    def _https_image(cls, value: str | None) -> str | None:
        # Mail apps block or flag images that are not on https; an email has no base URL.
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith("https://") or any(c in value for c in ' "<>\\\r\n'):
            raise ValueError("must be an absolute https:// URL of an image")
        return value

    @field_validator("site_url", "sendgrid_host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("site_url")
    @classmethod
    def _site_folder(cls, value: str) -> str:
        # The site's home is a folder: relative links resolve inside it
        # (RFC 3986 §5.2.3 drops the last segment of a base without "/", so
        # https://example.org/blog would send "post/" to https://example.org/post/).
        return value if value.endswith("/") else value + "/"

    @field_validator("feed_allow_private")
    @classmethod
    def _private_addresses(cls, value: bool | list[str]) -> bool | list[str]:
        for entry in value if isinstance(value, list) else []:
            private_address_entry(entry)  # raises ValueError naming the entry
        return value

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The site's time zone as a ``ZoneInfo``."""
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def unsubscribe_base_url(self) -> str:
        """Base of unsubscribe and preferences links: ``public_url`` if set
        (where ``digest serve`` is reachable), else ``site_url``."""
        return (self.public_url or self.site_url).rstrip("/")


LIST_FORMS = 'a JSON list (["posts", "feeds/news.xml"]), or in the environment comma-separated values (posts,feeds/news.xml)'
MAX_SHOWN = 60  # characters of a wrong value an error line quotes


def shown(value: str) -> str:
    """``value`` quoted for a one-line message: control characters escaped
    (repr), at most :data:`MAX_SHOWN` characters of it."""
    return repr(value) if len(value) <= MAX_SHOWN else f"{value[:MAX_SHOWN]!r}... ({len(value)} characters)"


def env_list(name: str, value: str, where: str, annotation: object = list) -> object:
    """A list setting's value as written in an environment variable or
    .env (``where`` names which, for the error): a JSON list when it starts
    with ``[`` (``["posts", "feeds/news.xml"]``), else comma-separated values,
    each stripped, empty ones dropped (``posts, feeds/news.xml``; ``posts``
    alone; empty: none). A setting that may also be one string
    (``schedule``) keeps a value without a comma as it is; one that may be a
    boolean (``feed_allow_private``) keeps true/false. Raises
    :class:`SettingsError` naming the variable for a ``[`` that is not JSON."""
    text = value.strip()
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SettingsError(
                f"setting {name!r} ({where}): {shown(value)} is not a JSON list ({exc}); write {LIST_FORMS}"
            ) from None
    if bool in options and text.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return text
    if str in options and "," not in text:
        return value
    return [part.strip() for part in text.split(",") if part.strip()]


class _EnvLists(EnvSettingsSource):
    """The environment, list settings read by :func:`env_list`."""

    where = "environment variable"

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: object) -> object:
        if not isinstance(value, str):
            return value
        return env_list(field_name, value, f"{self.where} DIGEST_{field_name.upper()}", field.annotation)


class _DotEnvLists(DotEnvSettingsSource):
    """``.env``, list settings read by :func:`env_list`."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: object) -> object:
        if not isinstance(value, str):
            return value
        return env_list(field_name, value, f"{ENV_FILE}, DIGEST_{field_name.upper()}", field.annotation)


def private_address_entry(entry: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """(network, port or None) of a ``feed_allow_private`` entry: an address
    or network, with a port if given (``10.0.0.0/8``, ``127.0.0.1:8080``,
    ``[::1]:8080``). Raises :class:`ValueError` for anything else."""
    if entry.startswith("["):
        network, _, port = entry[1:].partition("]")
        port = port.removeprefix(":")
    elif entry.count(":") == 1:
        network, port = entry.split(":")
    else:
        network, port = entry, ""
    try:
        return ipaddress.ip_network(network, strict=False), int(port) if port else None
    except ValueError:
        raise ValueError(f"{shown(entry)} is not an address or network, with an optional port (127.0.0.1:8080, 10.0.0.0/8)") from None


ENV_FILE = ".env"


def _file_text(name: str) -> str | None:
    """The text of the settings file ``name`` in the working directory, or
    None when there is none. Raises :class:`SettingsError` naming the file
    when it is there but is no regular file (a folder, a link to nowhere, a
    FIFO), cannot be read, or is not UTF-8 (naming the line)."""
    path = Path(name)
    if not os.path.lexists(path):
        return None
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "a link to nothing" if not path.exists() else "not a regular file"
        raise SettingsError(f"{path.absolute()}: settings file is {kind}; make it a file, or remove it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{path.absolute()}: cannot read the settings file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SettingsError(
            f"{path.absolute()}, line {line}, column {column}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def _toml_settings() -> dict:
    """./digest.toml as a dict ({} without one). Raises
    :class:`SettingsError` naming the file (and line) when it cannot be read
    (:func:`_file_text`) or is not TOML."""
    text = _file_text(CONFIG_FILE)
    if text is None:
        return {}
    if text.startswith("\ufeff"):  # Windows Notepad's "UTF-8 with BOM"; TOML has no place for it
        raise SettingsError(
            f"{Path(CONFIG_FILE).absolute()}: starts with a byte order mark (BOM), which TOML does not allow; "
            "save it as UTF-8 without BOM"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{Path(CONFIG_FILE).absolute()}: not valid TOML: {exc}") from None


def _unknown_toml_keys(data: dict) -> list[str]:
    """Keys of ./digest.toml that are not settings (typos)."""
    return sorted(set(data) - set(Settings.model_fields))


def _unknown_env_keys() -> tuple[list[str], list[str]]:
    """(errors, warnings) about the keys of ./.env, one phrase per key. It
    holds ``DIGEST_<SETTING>=value`` lines, the environment's form: a
    DIGEST_ key that is no setting is a typo (an error, as in digest.toml);
    any other key is ignored, and named (a setting's name without the
    prefix says which form to write; a .env shared with other programs
    may hold their variables)."""
    text = _file_text(ENV_FILE)
    if text is None:
        return [], []
    keys = [binding.key for binding in _env_bindings(text) if binding.key is not None]
    known = set(Settings.model_fields)
    errors, ignored = [], []
    for key in keys:
        prefixed = key.upper().startswith("DIGEST_")
        name = key.lower().removeprefix("digest_") if prefixed else key.lower()
        if prefixed and name not in known:
            errors.append(f"setting {key!r} ({ENV_FILE}): unknown setting")
        elif not prefixed and name in known:
            ignored.append(f"{key} (not read: write DIGEST_{key.upper()})")
        elif not prefixed:
            ignored.append(key)
    warnings = [f"{ENV_FILE}: ignored, not settings of digest (it reads DIGEST_<SETTING>=value lines): {', '.join(ignored)}"] if ignored else []
    return errors, warnings


def _env_bindings(text: str) -> list:
    """The bindings (``key``, ``value``, ``original.line``) of a .env file's
    ``text``, read by python-dotenv's own parser. Raises
    :class:`SettingsError` naming the file and the line of the first line
    it cannot read (an unclosed quote, a line that is no ``KEY=value``):
    python-dotenv would skip it with a warning naming no file, and the
    setting would silently fall back to another source or its default."""
    import io

    from dotenv.parser import parse_stream

    bindings = list(parse_stream(io.StringIO(text)))
    for binding in bindings:
        if binding.error:
            # The parser counts blank lines before a statement as its own: skip them.
            source = binding.original.string
            line = binding.original.line + source[: len(source) - len(source.lstrip())].count("\n")
            # The line itself is not quoted: it may hold a secret (an API key with its quote unclosed).
            raise SettingsError(
                f"{Path(ENV_FILE).absolute()}, line {line}: not a KEY=value line "
                "(an unclosed quote?); write DIGEST_<SETTING>=value, or start the line with # for a comment"
            )
    return bindings


_warned: set[str] = set()  # settings are read more than once per command: say each thing once


def load_settings(**overrides: object) -> Settings:
    """Read the settings; ``overrides`` (e.g. from CLI options) win over every
    file and variable. Raises :class:`SettingsError` with one line per wrong
    setting, naming it and where it can be set; a key of digest.toml, or a
    DIGEST_ key of .env, that is no setting is one of them. Other keys of
    .env are named in one warning (logged) and ignored."""
    toml = _toml_settings()
    unknown = [f"setting {name!r} ({CONFIG_FILE}): unknown setting" for name in _unknown_toml_keys(toml)]
    env_errors, env_warnings = _unknown_env_keys()
    unknown += env_errors
    for warning in env_warnings:
        if warning not in _warned:
            _warned.add(warning)
            log.warning("warning: %s", warning)
    if unknown:
        raise SettingsError("; ".join(unknown))
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            elif error["type"] == "list_type":
                message += f"; write {LIST_FORMS}"
            problems.append(f"setting {name!r} ({_source_of(str(error['loc'][0]) if error['loc'] else '', overrides, toml)}): {message}")
        raise SettingsError("; ".join(problems)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{Path(CONFIG_FILE).absolute()}: not valid TOML: {exc}") from None
    except (OSError, ValueError) as exc:  # what the checks above did not foresee: still one line
        raise SettingsError(f"cannot read settings: {' '.join(str(exc).split())}") from None


def _source_of(name: str, overrides: dict, toml: dict) -> str:
    """Where the value of setting ``name`` came from, by the settings'
    priority: the command line, the environment, .env, digest.toml (the
    default's own fault otherwise: both places it can be set are named)."""
    variable = f"DIGEST_{name.upper()}"
    if overrides.get(name) is not None:
        return "command line"
    if any(key.upper() == variable for key in os.environ):
        return f"environment variable {variable}"
    text = _file_text(ENV_FILE)
    if text is not None and any((binding.key or "").upper() == variable for binding in _env_bindings(text)):
        return f"{ENV_FILE}, {variable}"
    if name in toml:
        return CONFIG_FILE
    return f"{CONFIG_FILE}, or {variable}"
