"""The sandbox's HTML pages: what was received, rendered as the profile's real UI renders it.

Both servers show a post's Markdown `source`, not its HTML `content`: lemmy-ui
renders it with markdown-it (src/shared/markdown.ts: html off, linkify,
typographer, with sub, sup, footnote and a spoiler container), PieFed with
markdown2 and the extras of app/utils.py markdown_to_html. So a stray escape
in `source` shows here as it would there ("\\~" stays "\\~" on PieFed). The
renderers, with PieFed's passes before and after markdown2, are
mirror.sandbox.renderers; the result is sanitised with nh3.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import nh3
from aiohttp import web

from mirror.sandbox.renderers import lemmy_ui, piefed
from mirror.sandbox.state import INSTANCE, Instance, Stored


def render_markdown(software: str, text: str) -> str:
    """Markdown as the software's UI renders it, sanitised."""
    return nh3.clean(piefed(text) if software == "piefed" else lemmy_ui(text))


def body_html(instance: Instance, item: Stored) -> str:
    """The item's body as its page shows it: `source` rendered, else the content sanitised."""
    source = item.object.get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        return render_markdown(instance.software, source["content"])
    return nh3.clean(str(item.object.get("content") or ""))


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:auto;padding:1em;line-height:1.4}}
.c{{border-left:2px solid #ccc;padding-left:.8em;margin:.6em 0}}small{{color:#666}}
.tag{{background:#eee;border-radius:3px;padding:0 .3em}}</style>
</head><body>{body}</body></html>"""


def _page(title: str, body: str) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body), content_type="text/html"
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index_page)
    router.add_get("/post/{number}", post_page)


def _when(value: str | datetime | None) -> str:
    """A time as a reader wants it: to the minute, in UTC; an unreadable one as it came."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _byline(instance: Instance, item: Stored) -> str:
    """Author, bot tag and the date this server gives the item."""
    parts = [html.escape(str(item.object.get("attributedTo") or ""))]
    if item.bot:
        parts.append('<span class="tag">bot</span>')
        if instance.software == "piefed":
            parts[-1] += " (PieFed hides it from logged-out visitors)"
    published = item.object.get("published")
    if instance.keeps_published and published:
        parts.append(html.escape(_when(published)))
    else:
        received = f"received {_when(item.received_at)}"
        if published:
            received += f" (its published {_when(published)} is not kept)"
        parts.append(html.escape(received))
    if item.deleted:
        parts.append("deleted")
    return "<small>" + " · ".join(parts) + "</small>"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


def describe(instance: Instance) -> str:
    """One line saying how this instance behaves, for whoever looks at it in `mirror demo`."""
    said = [f"refusals answer {instance.refusal_status}"]
    said.append(
        "unknown parents fetched" if instance.fetch_unknown_parents else "unknown parents refused"
    )
    if instance.new_account_limit:
        said.append(
            f"an account younger than {_hours(instance.new_account_age)} may hold "
            f"{instance.new_account_posts} posts"
        )
    if instance.long_language_fails:
        said.append("a language identifier over 5 characters answers 500")
    return " · ".join(said)


def _post_rows(instance: Instance, community: str) -> str:
    rows = []
    for post in sorted(instance.objects.values(), key=lambda s: s.number):
        if post.kind != "post" or post.community != community:
            continue
        count = sum(1 for c in instance.objects.values() if c.post == post.id and c.kind != "post")
        title = html.escape(str(post.object.get("name") or "(untitled)"))
        rows.append(
            f'<li><a href="/post/{post.number}">{title}</a> {_byline(instance, post)}'
            f" <small>· {count} comments</small></li>"
        )
    return f"<ul>{''.join(rows)}</ul>"


def _subscriptions(instance: Instance) -> str:
    """The remote communities its user follows, each with what their Announces brought."""
    parts = []
    for group_id, subscription in sorted(instance.subscriptions.items()):
        state = "subscribed" if subscription.accepted else "subscribe pending"
        parts.append(
            f"<h2>!{html.escape(subscription.handle)}</h2>"
            f"<p><small>{html.escape(group_id)} · {state}</small></p>"
            + _post_rows(instance, group_id)
        )
    return "".join(parts)


async def index_page(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    body = (
        f"<h1>!{html.escape(instance.community)}@{html.escape(instance.host)}</h1>"
        f"<p>{html.escape(instance.software)} {html.escape(instance.version)} sandbox · "
        f"{len(instance.refused)} refused activities · {len(instance.failed)} answered 500<br>"
        f"<small>{html.escape(describe(instance))}</small></p>{_post_rows(instance, '')}"
        f"{_subscriptions(instance)}"
    )
    return _page(instance.title, body)


async def post_page(request: web.Request) -> web.Response:
    instance = request.app[INSTANCE]
    number = int(request.match_info["number"]) if request.match_info["number"].isdigit() else -1
    post = next(
        (i for i in instance.objects.values() if i.kind == "post" and i.number == number), None
    )
    if post is None:
        raise web.HTTPNotFound()
    title = str(post.object.get("name") or "(untitled)")
    parts = [f"<h1>{html.escape(title)}</h1>", _byline(instance, post), body_html(instance, post)]
    children = instance.children()

    def walk(parent: str) -> None:
        for comment in children.get(parent, []):
            indent = min(comment.depth, 12) * 1.2
            parts.append(
                f'<div class="c" style="margin-left:{indent}em">{_byline(instance, comment)}'
                f"{body_html(instance, comment)}</div>"
            )
            walk(comment.id)

    walk(post.id)
    return _page(title or "post", "".join(parts) + '<p><a href="/">back</a></p>')
