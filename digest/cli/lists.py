"""Commands about who gets an issue: audience, subscribers, suppressions."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from digest.cli.options import (
    issue_request,
    list_option,
    report_planning,
    selection_options,
    source_options,
    stop_unless_a_source_was_read,
    subscribers_option,
    warn,
)
from digest.errors import DigestError
from digest.settings import Settings, load_settings
from digest.words import plural


@click.command()
@source_options
@selection_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the issues, their variants, and the readers merged from several lists.")
def audience(settings: Settings, as_json: bool, **options) -> None:
    """Show the issue of each frequency the readers chose (daily, weekly,
    monthly): its key, send time and readers, and each variant: the tags
    that chose it, its article count and its number of subscribers (after
    suppressions, each reader's window from the ledger); then how many
    readers are on more than one list and were merged (one message each,
    with the tags of every list they are on).

    \b
    Examples:
      digest audience
      digest audience --as-of 2026-11-30 --list garden
      digest audience --json | jq .merged
    """
    from digest.audience import load_audience
    from digest.issue import issue_frequencies, plan_issue, resume_or_new
    from digest.ledger import Ledger
    from digest.ledger import exists as ledger_exists
    from digest.members import pack
    from digest.schedule import describe

    ledger = Ledger(settings.ledger) if ledger_exists(settings.ledger) else None
    issues = []
    try:
        whole = bool(options.get("since") or options.get("until"))
        frequencies, loaded = issue_frequencies(settings, options.get("list_name"), whole=whole)
        if loaded is None:
            loaded = load_audience(settings, options.get("list_name"), stream=True)
            loaded.subscribers = pack(loaded.subscribers)  # read now: its merged readers are known
        for frequency in frequencies:
            request = issue_request(settings, **options, frequency=frequency)
            issue = plan_issue(settings, resume_or_new(request, ledger, settings) if ledger else request, audience=loaded)
            report_planning(issue)
            stop_unless_a_source_was_read(issue, settings)  # a typo in a folder is not an audience with nothing to read
            issues.append((frequency, issue))
    finally:
        if ledger is not None:
            ledger.close()
    if as_json:
        click.echo(json.dumps({
            "issues": [{
                "frequency": frequency,
                "issue": issue.context.key,
                "scheduled_at": issue.scheduled_at.isoformat() if issue.scheduled_at else None,
                "readers": len(issue.subscribers),
                "recipients": issue.recipient_count,
                "variants": [
                    {"number": v.number, "key": v.key, "articles": len(v.articles), "subscribers": len(v.subscribers), "tags": sorted(v.tags)}
                    for v in issue.variants
                ],
            } for frequency, issue in issues],
            "lists": [file.stem for file in loaded.lists],
            "merged": loaded.merged,
        }, ensure_ascii=False))
        return
    for frequency, issue in issues:
        when = f", sent {describe(issue.scheduled_at, settings.tz)}" if issue.scheduled_at else ""
        click.echo(f"{frequency or 'issue'} {issue.context.key}{when}: {plural(len(issue.subscribers), 'reader')}")
        for variant in issue.variants:
            tags = ", ".join(sorted(variant.tags)) or "every tag"
            click.echo(f"variant {variant.number} [{variant.key}]: {plural(len(variant.articles), 'article')}, {plural(len(variant.subscribers), 'subscriber')} ({tags})")
        left_out = len(issue.subscribers) - issue.recipient_count
        click.echo(f"{plural(issue.recipient_count, 'recipient')} in {plural(len(issue.variants), 'variant')}; {plural(left_out, 'subscriber')} {'gets' if left_out == 1 else 'get'} nothing this time")
    if loaded.merged:
        click.echo(f"{plural(loaded.merged, 'reader')} on more than one list, merged: one message each, with the tags of every list they are on")


def list_options(command):
    """--subscribers and --list for the commands that read or edit lists."""

    @subscribers_option
    @list_option
    @functools.wraps(command)
    def wrapper(*args, subscribers, **kwargs):
        return command(*args, settings=load_settings(subscribers=subscribers), **kwargs)

    return wrapper


def _write_target(settings: Settings, list_name: str | None) -> Path:
    from digest.subscribers import list_file

    return list_file(Path(settings.subscribers), list_name, settings.default_list)


@click.group()
def subscribers() -> None:
    """Check, list and edit subscriber lists (CSV files in subscribers/).

    \b
    Examples:
      digest subscribers check
      digest subscribers list --list garden
      digest subscribers add ada@example.org --name "Ada" --tags "roses;bees"
      digest subscribers import mailchimp-export.csv --list garden
    """


@subscribers.command("check")
@list_options
def subscribers_check(settings: Settings, list_name) -> None:
    """Validate the list(s): print each bad row and duplicate with its file
    and line; exit 1 if there is any.

    \b
    Examples:
      digest subscribers check
      digest subscribers check --list garden
    """
    from digest.subscribers import choose_lists, load_subscribers, on_several_lists

    files = choose_lists(Path(settings.subscribers), list_name, settings.default_list)
    found, problems = load_subscribers(Path(settings.subscribers), list_name=list_name, default_list=settings.default_list)
    for problem in problems:
        click.echo(str(problem))
    # Information, not a problem: each gets one message with the tags of every list they are on.
    several = on_several_lists(files)
    by_key = {person.key: person.email for person in found}
    for key, names in several.items():
        click.echo(f"{by_key.get(key, key)}: on lists {', '.join(names)}, merged (one message, the tags of each)")
    merged = f", {plural(len(several), 'address', 'addresses')} on more than one list (merged)" if several else ""
    click.echo(f"{plural(len(found), 'valid subscriber')}, {plural(len(problems), 'problem')}{merged} in {', '.join(str(f) for f in files) or 'no list'}")
    if problems:
        raise click.exceptions.Exit(1)


@subscribers.command("list")
@list_options
@click.option("--ledger", type=click.Path(path_type=Path), help="Ledger file with the suppressions (default: the 'ledger' setting).")
def subscribers_list(settings: Settings, list_name, ledger) -> None:
    """The effective audience: who gets the next issue, with their tags
    (stored preferences applied), then the suppressed, marked as such.

    \b
    Examples:
      digest subscribers list
      digest subscribers list --list garden | grep suppressed
    """
    from digest.audience import load_audience

    audience = load_audience(settings, list_name, ledger=ledger)
    for problem in audience.problems:
        warn(f"subscriber skipped: {problem}")
    for person in audience.subscribers:
        click.echo(f"{person.email}\t{person.name}\t{';'.join(sorted(person.tags)) or '(every tag)'}\t{person.list_name}")
    for person, why in audience.suppressed:
        click.echo(f"{person.email}\t{person.name}\tsuppressed: {why.reason} ({why.source}, {why.created_at:%Y-%m-%d})\t{person.list_name}")
    click.echo(f"{plural(len(audience.subscribers), 'subscriber')}, {len(audience.suppressed)} suppressed", err=True)


@subscribers.command("add")
@list_options
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--tags", default="", metavar="TAGS", help="Tags, ;-separated (none: every article).")
def subscribers_add(settings: Settings, list_name, email, name, tags) -> None:
    """Add EMAIL at the end of a list (created if absent); other rows are
    left byte for byte.

    \b
    Examples:
      digest subscribers add ada@example.org --name "Ada Lovelace" --tags "roses;bees"
      digest subscribers add bob@example.org --list kitchen
    """
    from digest.consent import address_hash, forgotten_hashes
    from digest.listedits import add_subscriber

    target = _write_target(settings, list_name)
    if address_hash(settings.secret_key.get_secret_value(), email) in forgotten_hashes(settings.ledger):
        raise DigestError(f"{email.strip()} asked to be forgotten (digest subscribers forget): not added; they can sign up again themselves")
    added = add_subscriber(target, email, name, [tags])
    click.echo(f"added {added.email} to {target}")


@subscribers.command("remove")
@list_options
@click.argument("email")
def subscribers_remove(settings: Settings, list_name, email) -> None:
    """Remove EMAIL's row from a list (other rows stay byte for byte). To
    stop mail to an address whatever the lists say, use
    `digest suppressions add` instead.

    \b
    Example:
      digest subscribers remove ada@example.org --list garden
    """
    from digest.listedits import remove_subscriber

    target = _write_target(settings, list_name)
    removed = remove_subscriber(target, email)
    click.echo(f"removed {plural(removed, 'row')} of {email.strip()} from {target}")


@subscribers.command("import")
@list_options
@click.argument("file", type=click.Path(path_type=Path))
def subscribers_import(settings: Settings, list_name, file) -> None:
    """Merge FILE (a CSV: ours, or an export from another service, columns
    matched by name such as "Email Address", "First Name", "Tags") into a
    list. Known addresses are left as they are; people whose status says
    they left (unsubscribed, cleaned, complained) are not imported and are
    recorded as suppressions, so they are never mailed even if they are on
    the list already. Each row skipped (a bad address, a duplicate, an
    erased person) is one line on stderr with its file and line; the good
    rows are imported all the same, and the exit code is then 1.

    \b
    Example:
      digest subscribers import ~/Downloads/members_export.csv --list garden
    """
    from digest.consent import address_hash, forgotten_hashes
    from digest.listedits import import_subscribers

    target = _write_target(settings, list_name)
    erased = forgotten_hashes(settings.ledger)
    secret = settings.secret_key.get_secret_value()
    result = import_subscribers(target, file, ledger=settings.ledger, forgotten=lambda email: address_hash(secret, email) in erased)
    for problem in result.problems:
        warn(f"not imported: {problem}")
    click.echo(result.summary(target))
    if result.problems:  # as `subscribers check` and `export`: a skipped row is a problem to look at
        raise click.exceptions.Exit(1)


@subscribers.command("show")
@subscribers_option
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for a GDPR access request).")
def subscribers_show(subscribers, email, as_json) -> None:
    """Everything digest keeps about EMAIL: its rows in every list, topics
    and frequency chosen, consent, suppressions, deliveries with their dates
    and statuses, and the webhook events about them.

    \b
    Examples:
      digest subscribers show ada@example.org
      digest subscribers show ada@example.org --json > ada-data.json
    """
    from digest.privacy import describe

    found = describe(load_settings(subscribers=subscribers), email)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    click.echo(f"email: {found['email']}")
    if found["forgotten_at"]:
        click.echo(f"erased on request at {found['forgotten_at']}: only a keyed hash is kept")
    for row in found["lists"]:
        values = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("list", "file", "line"))
        click.echo(f"list {row['list']} ({row['file']}:{row['line']}): {values}")
    for name, choice in found["choices"].items():
        tags = "(not chosen)" if choice["tags"] is None else ";".join(choice["tags"]) or "(every tag)"
        click.echo(f"choices on {name}: tags {tags}, frequency {choice['frequency'] or '(not chosen)'}")
    for item in found["consents"]:
        where = f", from {item['ip_address']}" if item["ip_address"] else ""
        click.echo(f"consent on {item['list']}: {item['method']}, confirmed {item['confirmed_at']}{where}")
    for item in found["suppressions"]:
        click.echo(f"suppressed on {item['list']}: {item['reason']} ({item['source']}, {item['created_at']})")
    for item in found["deliveries"]:
        why = f" ({item['last_error']})" if item["last_error"] else ""
        click.echo(f"issue {item['issue_key']}: {item['status']}{why}, queued {item['created_at']}, last change {item['updated_at']}")
        for event in item["events"]:
            click.echo(f"  event {event['event']}: {event['detail'] or ''} at {event['occurred_at'] or event['recorded_at']}")
    if found["signup_pending"]:
        click.echo("a sign-up confirmation email went out in the last hour")
    if not (found["lists"] or found["consents"] or found["suppressions"] or found["deliveries"] or found["forgotten_at"]):
        click.echo("nothing is kept about this address")


@subscribers.command("forget")
@subscribers_option
@click.argument("email")
def subscribers_forget(subscribers, email) -> None:
    """Erase EMAIL (a GDPR erasure request): its rows in every list, its
    choices, consent and suppressions go, and its address in the delivery
    and event records is replaced by a keyed hash. Only that hash is kept,
    so a later import or list edit that brings the address back is refused
    and never mailed. Prints what was removed. Needs a strong secret_key
    (the hash is keyed with it), as a real send does (exit 2 otherwise).

    \b
    Example:
      digest subscribers forget ada@example.org
    """
    from digest.privacy import forget
    from digest.tokens import check_secret

    settings = load_settings(subscribers=subscribers)
    # The kept hash is keyed with secret_key: with a public default key anyone
    # could test an address against it, and a key set later would not know it.
    check_secret(settings)
    click.echo(forget(settings, email).summary())


@subscribers.command("export")
@list_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write (atomically); default: standard output.")
def subscribers_export(settings: Settings, list_name, output) -> None:
    """Write the audience as CSV (email,name,tags,list,status): subscribers
    with their effective tags, and suppressed addresses with the reason as
    status, so another service does not mail people who left. Rows that
    cannot be read are listed on stderr and left out (exit 1); a list that
    cannot be read at all exports nothing (exit 1). The file is 0600.

    \b
    Examples:
      digest subscribers export --list garden -o garden-export.csv
      digest subscribers export > everyone.csv
    """
    from digest.audience import export_audience, load_audience
    from digest.listedits import write_atomic

    audience = load_audience(settings, list_name)
    unreadable = [problem for problem in audience.problems if not problem.line]
    if unreadable:  # an empty export would tell another service that nobody subscribed
        raise DigestError("; ".join(str(problem) for problem in unreadable) + "; nothing exported")
    for problem in audience.problems:
        warn(f"not exported: {problem}")
    text = export_audience(audience)
    if output:
        write_atomic(output, text.encode("utf-8"), private=True)  # addresses: readable by the owner only
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if audience.problems:
        raise click.exceptions.Exit(1)


@click.group()
def suppressions() -> None:
    """Addresses that are never mailed, whatever the lists say (kept in the ledger).

    \b
    Examples:
      digest suppressions list
      digest suppressions add ada@example.org --reason manual
      digest suppressions remove ada@example.org
    """


def _ledger_option(command):
    return click.option("--ledger", type=click.Path(path_type=Path), help="Ledger file (default: the 'ledger' setting).")(command)


@suppressions.command("list")
@_ledger_option
@click.option("--list", "list_name", metavar="NAME", help="Only those that apply to this list (its own and the global ones).")
def suppressions_list(ledger, list_name) -> None:
    """Every suppression, oldest first: address, reason, source, list, time.

    \b
    Example:
      digest suppressions list --list garden
    """
    from digest import suppressions as store

    path = ledger or load_settings().ledger
    found = store.list_suppressions(path, list_name) if Path(path).is_file() else []
    for item in found:
        click.echo(f"{item.address}\t{item.reason}\t{item.source}\t{item.list_name or '(every list)'}\t{item.created_at.isoformat()}")
    click.echo(f"{plural(len(found), 'suppression')}", err=True)


@suppressions.command("add")
@_ledger_option
@click.argument("email")
@click.option("--reason", type=click.Choice(["manual", "unsubscribed", "bounced", "spam-report"]), default="manual", show_default=True)
@click.option("--list", "list_name", metavar="NAME", help="Only for this list (default: every list).")
def suppressions_add(ledger, email, reason, list_name) -> None:
    """Never mail EMAIL again (on every list, or on --list NAME).

    \b
    Example:
      digest suppressions add ada@example.org --reason bounced
    """
    from digest import suppressions as store
    from digest.addresses import normalize_address

    address = normalize_address(email)
    added = store.add(ledger or load_settings().ledger, address, reason, "cli", list_name)
    click.echo(f"suppressed {address} ({reason}, {list_name or 'every list'})" if added else f"{address} was already suppressed")


@suppressions.command("remove")
@_ledger_option
@click.argument("email")
@click.option("--list", "list_name", metavar="NAME", help="Only the suppression for this list (default: all of EMAIL's).")
def suppressions_remove(ledger, email, list_name) -> None:
    """Lift EMAIL's suppressions so the lists apply again.

    \b
    Example:
      digest suppressions remove ada@example.org
    """
    from digest import suppressions as store

    removed = store.remove(ledger or load_settings().ledger, email, list_name)
    if not removed:
        raise DigestError(f"{email.strip()} is not suppressed{' on ' + list_name if list_name else ''}")
    click.echo(f"lifted {plural(removed, 'suppression')} of {email.strip()}")
