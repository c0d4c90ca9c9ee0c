"""Rendering: one variant -> subject, preheader, HTML (CSS inlined) and text.

Rendering happens once per variant. Per-person values (name, address,
unsubscribe and preferences URLs) are left as placeholders such as
``%%digest.html.name.<nonce>%%`` in the rendered HTML and
``%%digest.text.name.<nonce>%%`` in the text (the two links have one
placeholder for both, ``%%digest.link.unsubscribe_url.<nonce>%%``), with a
nonce drawn afresh for each render (so content can never spell one: see
:mod:`digest.personalization`), and filled per recipient by
:func:`personalize` (outbox, SMTP) or by SendGrid substitutions built from
:func:`substitutions`. The placeholders are plain text with no character
that autoescaping or the inliner rewrite, and no ``{{``/``{%`` (which
would look like template leftovers).

Templates are Jinja2 (autoescape for HTML, StrictUndefined), read from the
editors' ``templates_dir`` first and the packaged defaults second, so an
editor copies only the files they change. ``templates/README.md`` lists the
variables a template sees.

Each email links its web copy, the issue's page of ``digest archive``
(:func:`issue_url`), in both parts ("View in your browser").

Size budget: Gmail clips HTML bodies above about 102 KB, hiding the
footer with the unsubscribe link. A variant whose inlined HTML is above
``settings.html_budget_kb`` is rendered again with shorter excerpts, then the
compact layout for its oldest articles, then its oldest articles as "More this
week" links, then the oldest of those counted in one "N more articles" link to
the issue's web page; the newest few keep the standard layout while they fit,
and the footer is never cut. ``RenderedVariant.notes`` says what was done.
"""

from __future__ import annotations

import re
import textwrap
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

import digest
from digest.articles import Article, excerpt, is_rtl, slugify_tag
from digest.budget import Plan, SizeEstimate, final_note, fit_budget, html_size
from digest.errors import DigestError, SettingsError
from digest.images import COLUMN_WIDTH, LeadImage, display_size
from digest.inlining import inline_css
from digest.personalization import fill_placeholders, html_placeholders, new_nonce, text_placeholders
from digest.recipients import Recipient
from digest.settings import Settings

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides the rest of a message above ~102 KB of HTML
TEXT_WIDTH = 72  # columns of the text part (RFC 3676 suggests under 78; 72 leaves room for quoting)
IMAGE_WIDTH = COLUMN_WIDTH  # the 600px column less 2 x 24px of cell padding
ONE_LINE_CHARS = 80  # the line under a title in the compact layout: with the date, one line at 600px
PREHEADER_MIN, PREHEADER_MAX = 40, 100  # what inbox previews show (Litmus, Email on Acid)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")  # what an archive page's file name may not hold


# Zero-width non-joiner + no-break space, repeated after the preheader (Cerberus).
PREHEADER_SPACER = "\u200c\u00a0" * 40


class RenderError(DigestError):
    """A template could not be found, parsed or rendered. The message names
    the template file and line. Exit status 2, like a wrong setting: an
    editor has a file to fix."""

    exit_code = 2


@dataclass(frozen=True)
class IssueContext:
    """What every variant of one issue shares: its key (e.g. ``2026-W48`` or
    ``preview``), its time (aware) and window, the editor's note (Markdown)
    and its scheduled send time (aware; None: the end of its window), the
    date the email shows."""

    key: str
    as_of: datetime
    window_start: datetime
    window_end: datetime
    intro_markdown: str | None = None
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class RenderedVariant:
    """A variant rendered once: ``html`` (inlined, UTF-8 text) and ``text``
    carry placeholders for per-person values, made with this render's
    ``nonce`` (:func:`digest.personalization.new_nonce`); ``notes`` says what
    the size budget changed (empty when nothing)."""

    variant_key: str
    subject: str
    preheader: str
    html: str
    text: str
    article_ids: tuple[str, ...]
    nonce: str
    notes: tuple[str, ...] = ()
    number: int = 0  # the variant's number as `digest audience` lists it; 0 when not known


# --- templates ------------------------------------------------------------------------


def default_templates_dir() -> Path:
    """The packaged default templates: ``digest/templates`` when installed
    (pyproject maps the repository's ``templates/`` there), else the
    repository's top-level ``templates/``."""
    installed = Path(digest.__file__).parent / "templates"
    if (installed / "digest.html.j2").is_file():
        return installed
    return Path(digest.__file__).resolve().parents[1] / "templates"


def _autoescape(name: str | None) -> bool:
    # HTML templates (and strings) are escaped; the text part and the CSS are not.
    return name is None or not name.endswith((".txt.j2", ".css"))


def wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Each line of ``text`` wrapped at ``width`` columns, never inside a
    word or a URL (a long URL keeps a line of its own)."""
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) if line.strip() else ""
        for line in str(text).splitlines()
    )


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path | None) -> jinja2.Environment:
    """The Jinja environment for an editors' ``templates_dir`` (None: the
    defaults only). Files missing there come from :func:`default_templates_dir`.
    Raises :class:`SettingsError` when ``templates_dir`` is not a folder.
    Templates are re-read when their file changes (Jinja's ``auto_reload``)."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        if not Path(templates_dir).is_dir():  # a typo must not silently drop the editors' own templates
            raise SettingsError(f"setting 'templates_dir': {templates_dir} is not a folder")
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(default_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = wrap
    return env


def render_template(env: jinja2.Environment, name: str, context: dict) -> str:
    """Render one template; any failure becomes a :class:`RenderError` naming
    the template file and line where it happened."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise RenderError(f"{where}, line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found (looked in {_search_path(env)})") from None
    except Exception as exc:  # an error inside a template: StrictUndefined, a bad filter argument...
        # Jinja rewrites the traceback so that template frames carry the template's file and line.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith((".j2", ".css"))]
        where = f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else name
        message = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
        raise RenderError(f"{where}: {message}") from None


def _search_path(env: jinja2.Environment) -> str:
    loader = env.loader
    assert isinstance(loader, jinja2.ChoiceLoader)
    return ", ".join(str(p) for sub in loader.loaders if isinstance(sub, jinja2.FileSystemLoader) for p in sub.searchpath)


# --- what the templates see -----------------------------------------------------------


@dataclass(frozen=True)
class ArticleView:
    """One article as a template shows it. ``layout`` names the template in
    ``layouts/`` (``standard`` or ``compact``); ``level`` is its heading level;
    ``tags`` as their authors wrote them; ``excerpt_html`` is safe HTML,
    ``excerpt_text`` and ``line`` plain text; ``image`` is an https URL or
    None, with ``image_alt`` (its own, else the title), ``image_width``
    (pixels: the column, or less when the image is smaller) and
    ``image_height`` (pixels, or None when its proportions are not known);
    ``lang`` and ``dir`` are the article's own language and direction when
    they differ from the issue's (else None)."""

    id: str
    title: str
    url: str | None
    date: str
    tags: tuple[str, ...]
    meta: str
    image: str | None
    excerpt_html: Markup
    excerpt_text: str
    line: str
    layout: str
    level: int
    image_alt: str = ""
    image_width: int = IMAGE_WIDTH
    image_height: int | None = None
    lang: str | None = None
    dir: str | None = None


@dataclass(frozen=True)
class Section:
    """A group of articles under one heading (``title`` None: no heading)."""

    tag: str | None
    title: str | None
    articles: list[ArticleView]


@dataclass(frozen=True)
class Logo:
    """The site's logo in the header: ``url`` and ``dark_url`` (https, the
    latter None when there is no dark-mode version), ``width`` in pixels,
    ``alt`` the site's name."""

    url: str
    dark_url: str | None
    width: int
    alt: str


def _logo(settings: Settings) -> Logo | None:
    if not settings.logo_url:
        return None
    return Logo(settings.logo_url, settings.logo_dark_url, settings.logo_width, settings.site_name)


def _format_date(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(settings.tz)
    return f"{local.day} {local:%b %Y}"


def _tag_title(entry: str, written: dict[str, str]) -> str:
    """A section heading from a ``sections`` entry: as written, else as the
    articles write the tag, else the slug made readable."""
    if entry != slugify_tag(entry):
        return entry
    if entry in written:
        return written[entry]
    text = entry.replace("-", " ")
    return text[:1].upper() + text[1:]


def _one_line(text: str) -> str:
    line = excerpt(text, words=12)
    return line if len(line) <= ONE_LINE_CHARS else line[:ONE_LINE_CHARS].rstrip() + "…"


def _secure_image(url: str | None) -> str | None:
    # Only absolute https images: an http image is blocked or flagged by mail apps.
    parts = urlsplit(url or "")
    return url if parts.scheme == "https" and parts.netloc else None


def https(url: str | None) -> str | None:
    """``url`` with ``http://`` upgraded to ``https://``: mail apps and spam
    filters flag plain-http links (email_lint LINK_INSECURE), and the sites
    of our time answer on https."""
    return "https://" + url[len("http://") :] if url and url.lower().startswith("http://") else url


_HTTP_HREF = re.compile(r"""(<a\s[^>]*?\bhref=["'])http://""", re.IGNORECASE)


def _view(article: Article, plan: Plan, settings: Settings, level: int) -> ArticleView:
    date = _format_date(article.published, settings)
    own = " ".join(article.summary_text.split())
    if plan.excerpt_words is None:
        excerpt_html, excerpt_text = Markup(article.summary_html), own  # sanitized by digest.articles
    else:
        excerpt_text = excerpt(own, words=plan.excerpt_words)
        excerpt_html = escape(excerpt_text)
    tags = article.tag_names or article.tags
    minutes = f"{article.reading_minutes} min read"
    meta = " · ".join(part for part in (date, ", ".join(tags), minutes) if part)
    if article.author:
        meta += f" · {article.author}"
    image = _secure_image(article.image)
    width, height = display_size(LeadImage(image or "", None, article.image_width, article.image_height), IMAGE_WIDTH)
    foreign = article.language and article.language.split("-")[0].lower() != settings.language.split("-")[0].lower()
    return ArticleView(
        id=article.id,
        title=article.title,
        url=https(article.url),
        date=date,
        tags=tags,
        meta=meta,
        image=image,
        excerpt_html=excerpt_html,
        excerpt_text=excerpt_text,
        line=_one_line(own),
        layout="compact" if article.id in plan.compact else settings.layout,
        level=level,
        image_alt=article.image_alt or article.title,
        image_width=width,
        image_height=height,
        lang=article.language if foreign else None,
        dir=("rtl" if is_rtl(article.language) else "ltr") if foreign and is_rtl(article.language) != is_rtl(settings.language) else None,
    )


def _groups(articles: Sequence[Article], settings: Settings) -> list[tuple[str | None, list[Article]]]:
    """Articles grouped by ``settings.sections`` (an article goes to the first
    section whose tag it has; the rest to a last "Also this week" group), or
    one untitled group when no sections are set."""
    if not settings.sections:
        return [(None, list(articles))]
    placed: set[str] = set()
    groups: list[tuple[str | None, list[Article]]] = []
    for entry in settings.sections:
        tag = slugify_tag(entry)
        members = [a for a in articles if tag in a.tags and a.id not in placed]
        placed.update(a.id for a in members)
        if members:
            groups.append((entry, members))
    rest = [a for a in articles if a.id not in placed]
    if rest:
        groups.append(("Also this week" if groups else None, rest))
    return groups


def _initial_plan(articles: Sequence[Article], settings: Settings) -> Plan:
    """The plan before any size budget: every article in ``settings.layout``,
    except what goes beyond ``articles_per_section`` (listed as links)."""
    limit = settings.articles_per_section
    if limit is None:
        return Plan()
    overflow = {a.id for _, members in _groups(articles, settings) for a in members[limit:]}
    return Plan(linked=frozenset(overflow))


def _context(
    articles: Sequence[Article],
    plan: Plan,
    context: IssueContext,
    settings: Settings,
    *,
    subject: str,
    preheader: str,
    tags: frozenset[str],
    placeholders: dict[str, str],
    web_page: bool,
) -> dict:
    groups = _groups(articles, settings)
    written = {slug: name for a in articles for slug, name in zip(a.tags, a.tag_names, strict=False)}  # as authors write them
    level = 3 if any(title for title, _ in groups) else 2
    sections = []
    for title, members in groups:
        shown = [_view(a, plan, settings, level) for a in members if a.id not in plan.linked]
        if shown:
            sections.append(Section(tag=slugify_tag(title) if title else None, title=_tag_title(title, written) if title else None, articles=shown))
    more = [_view(a, plan, settings, level) for a in articles if a.id in plan.linked and a.id not in plan.unlisted]
    intro = context.intro_markdown.strip() if context.intro_markdown else ""
    return {
        "lang": settings.language,
        "dir": "rtl" if is_rtl(settings.language) else "ltr",
        "column_width": IMAGE_WIDTH,
        "logo": _logo(settings),
        "subject": subject,
        "preheader": preheader,
        "preheader_spacer": PREHEADER_SPACER,
        "site_name": settings.site_name,
        "site_url": settings.site_url,
        "site_host": urlsplit(settings.site_url).hostname or settings.site_url,
        "postal_address": settings.postal_address,
        "issue": context,
        "issue_label": _issue_label(context, settings),
        "web_page": web_page,
        "view_url": None if web_page else https(issue_url(settings, context.key)),
        "topics": ", ".join(sorted(written.get(tag, tag) for tag in tags)),
        "intro_html": Markup(_MARKDOWN.render(intro)) if intro else "",
        "intro_text": _markdown_text(intro),
        "sections": sections,
        "more": more,
        "unlisted": len(plan.unlisted),
        "article_count": len(articles),
        "person": placeholders,
    }


def _issue_label(context: IssueContext, settings: Settings) -> str:
    # The issue's own date (when the schedule sends it), not the day it was built.
    date = _format_date(context.scheduled_at or context.window_end, settings)
    return date if context.key == "preview" else f"{date} · issue {context.key}"


# CommonMark without raw HTML: the editor's note is text with links and emphasis.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_MARKDOWN_BLOCK = re.compile(r"^\s*([-*+>#|]\s|\d+[.)]\s|```|~~~)|^( {4}|\t)")


def _markdown_text(markdown: str) -> str:
    """The editor's note for the text part: Markdown is made to be read as
    plain text, so it stays as written, except that the lines of an ordinary
    paragraph are joined (the ``wrap`` filter wraps them again at 72)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = block.splitlines()
        keep = any(_MARKDOWN_BLOCK.match(line) for line in lines)  # lists, quotes, code, headings
        paragraphs.append(block if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(p for p in paragraphs if p)


# --- the web copy of an issue ------------------------------------------------------------


def archive_base_url(settings: Settings) -> str:
    """Where ``digest archive`` pages are published: ``settings.archive_url``
    or ``{site_url}archive``, without a trailing slash. Raises
    :class:`SettingsError` unless it is an http(s) URL."""
    base = settings.archive_url or settings.site_url.rstrip("/") + "/archive"
    if not base.startswith(("https://", "http://")):
        raise SettingsError(f"setting 'archive_url' (digest.toml, or DIGEST_ARCHIVE_URL): must start with http:// or https://, not {base!r}")
    return base.rstrip("/")


def page_name(issue_key: str) -> str:
    """The file name of an issue's web page: its key with anything but
    letters, digits, ``.``, ``_`` and ``-`` replaced (``2026-W48`` ->
    ``2026-W48.html``)."""
    return _UNSAFE_NAME.sub("-", issue_key).strip(".-") + ".html"


def issue_url(settings: Settings, issue_key: str) -> str:
    """The absolute URL of issue ``issue_key``'s web page, the target of the
    "View in your browser" link: ``{archive_base_url}/{page_name}``."""
    return f"{archive_base_url(settings)}/{page_name(issue_key)}"


# --- subject and preheader ------------------------------------------------------------


def make_subject(template: str, *, site_name: str, titles: Sequence[str], issue_key: str) -> str:
    """The subject line from ``settings.subject_template`` (``str.format``
    fields ``{site_name}``, ``{first_title}``, ``{more}`` = " and N more" or
    "", ``{count}``, ``{issue_key}``), on one line: CR, LF and runs of
    whitespace become one space (a header may not contain CR/LF, RFC 5322
    §2.2). Raises :class:`SettingsError` for an unknown field."""
    count = len(titles)
    fields = {
        "site_name": site_name,
        "first_title": titles[0] if titles else "",
        "more": f" and {count - 1} more" if count > 1 else "",
        "count": count,
        "issue_key": issue_key,
    }
    try:
        subject = template.format_map(fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise SettingsError(
            f"setting 'subject_template' (digest.toml, or DIGEST_SUBJECT_TEMPLATE): cannot use {template!r} "
            f"({exc.__class__.__name__}: {exc}); its fields are {{site_name}}, {{first_title}}, {{more}}, "
            "{count} and {issue_key}"
        ) from None
    return " ".join(subject.split())


def make_preheader(titles: Sequence[str], settings: Settings) -> str:
    """The hidden inbox preview: ``settings.preheader`` if set, else the
    first titles joined by " · ", cut at a word to at most 100 characters and
    completed to at least 40 with the article count and site name."""
    if settings.preheader:
        return " ".join(settings.preheader.split())
    text = ""
    for title in titles:
        candidate = f"{text} · {title}" if text else title
        if len(candidate) > PREHEADER_MAX:
            break
        text = candidate
    if not text and titles:
        text = textwrap.shorten(titles[0], PREHEADER_MAX, placeholder="…")
    if len(text) < PREHEADER_MIN:
        count = len(titles)
        suffix = f"{count} new article{'s' if count != 1 else ''} from {settings.site_name}"
        text = f"{text} — {suffix}" if text else suffix
        text = textwrap.shorten(text, PREHEADER_MAX, placeholder="…")
    return text


# --- rendering ------------------------------------------------------------------------


def render_variant(
    articles: Sequence[Article],
    context: IssueContext,
    settings: Settings,
    *,
    variant_key: str,
    tags: frozenset[str] = frozenset(),
    web_page: bool = False,
) -> RenderedVariant:
    """Render one variant (its ``articles`` in selection order, newest first)
    once: subject, preheader, HTML with CSS inlined, and text, with
    placeholders for the per-person values.

    ``tags`` are the subscribers' tags that chose these articles (empty:
    every tag); the footer names them. An email links its web copy at the
    top ("View in your browser", :func:`issue_url`); ``web_page`` renders
    that copy instead: no such link, and a footer without the reader's
    address and links. An email's HTML above ``settings.html_budget_kb``
    (KiB, after inlining) is reduced step by step (module doc) and the steps
    are listed in ``notes``; a web page is never reduced (no mail app clips
    it, and an email's "N more articles" link leads there). Raises :class:`RenderError` for a template
    problem (file and line named) and :class:`SettingsError` for a bad
    ``subject_template``.
    """
    env = template_environment(settings.templates_dir)
    titles = [a.title for a in articles]
    subject = make_subject(settings.subject_template, site_name=settings.site_name, titles=titles, issue_key=context.key)
    preheader = make_preheader(titles, settings)
    nonce = new_nonce()

    def build(plan: Plan, placeholders: dict[str, str]) -> dict:
        return _context(
            articles, plan, context, settings,
            subject=subject, preheader=preheader, tags=tags, placeholders=placeholders, web_page=web_page,
        )

    def render_raw(plan: Plan) -> str:
        html = render_template(env, "digest.html.j2", build(plan, html_placeholders(nonce)))
        return _HTTP_HREF.sub(r"\1https://", html)  # links inside summaries, the editor's note, templates

    def inline(raw: str) -> str:
        return inline_css(raw, settings.site_url, settings.inliner)

    plan = _initial_plan(articles, settings)
    raw = render_raw(plan)
    html = inline(raw)
    budget = settings.html_budget_kb * 1024
    if html_size(html) > budget and not web_page:  # a web page is not clipped: it shows every article
        estimate = SizeEstimate(raw, html)
        plan = fit_budget(articles, plan, html_size(html), budget, lambda p: estimate(render_raw(p)), settings)
        html = inline(render_raw(plan))  # the second and last inlining of this variant
        plan = replace(plan, notes=(*plan.notes, final_note(html_size(html), budget)))
    text = render_template(env, "digest.txt.j2", build(plan, text_placeholders(nonce))).strip() + "\n"
    return RenderedVariant(
        variant_key=variant_key,
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        article_ids=tuple(a.id for a in articles),
        nonce=nonce,
        notes=plan.notes,
    )


# --- personalization ----------------------------------------------------------------------


def personalize(rendered: RenderedVariant, recipient: Recipient) -> tuple[str, str]:
    """(html, text) of ``rendered`` with ``recipient``'s values filled in
    (see :func:`digest.personalization.fill_placeholders`)."""
    return fill_placeholders(rendered.html, rendered.text, recipient, rendered.nonce)
