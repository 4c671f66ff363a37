"""The Markdown subset of messages (rooms/formatting.py): what renders, which links survive, and
that every path that shows a message (frames, catch-up, history page, mentions, admin) shows
the same sanitised result while the stored body stays the text the user wrote."""

import random
import re
from html.parser import HTMLParser

import pytest

from notifications.models import Notification
from rooms import services
from rooms.events import catchup_frames, edited_payload, message_payload
from rooms.formatting import _PLAIN, LINK_REL, _rendered, body_html, body_text
from tests.factories import user_create

REL = f'rel="{LINK_REL}"'


class Elements(HTMLParser):
    """The tags and attribute names of real elements in some HTML (not text that looks so)."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


@pytest.mark.parametrize(
    ("body", "html"),
    [
        ("**bold**", "<p><strong>bold</strong></p>"),
        ("__bold__", "<p><strong>bold</strong></p>"),
        ("*italic* and _italic_", "<p><em>italic</em> and <em>italic</em></p>"),
        ("~~gone~~", "<p><s>gone</s></p>"),
        ("run `make test`", "<p>run <code>make test</code></p>"),
        ("```\nif a < b:\n    pass\n```", "<pre><code>if a &lt; b:\n    pass\n</code></pre>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
        ("3. three\n4. four", '<ol start="3">\n<li>three</li>\n<li>four</li>\n</ol>'),
        ("line one\nline two", "<p>line one<br>\nline two</p>"),
        ("plain text", "<p>plain text</p>"),
    ],
)
def test_the_markdown_subset_renders(body, html):
    assert body_html(body) == html


def _plain_lines(count: int) -> list[str]:
    """Random lines of the plain-line characters and of a few that are not, mixed."""
    rng = random.Random(12)
    plain, other = "aZ09 ,?!'-.", ':@*_`~[]()<>&#+=\\/"\n'
    lines = [
        "".join(rng.choice(plain if i % 2 else plain + other) for _ in range(rng.randint(1, 12)))
        for i in range(count)
    ]
    return [
        *lines,
        "P3 12-345 987654321",
        "1- a",
        "1 2 3",
        "- a",
        "a - b",
        "hello,world",
        "ok!!",
        "don't",
        "a  b",
        "yes?no",
        "-1",
        "!a",
        "a!",
        "1.",
        "1. a",
        "12.5 per cent.",
        "v1.2.3",
        "P3 1.2.3 99887766",
        "see example.com",
        "www.example.org now",
        "a.io",
        "e.g. this",
        "wait...",
    ]


def test_a_plain_line_renders_as_the_parser_would_render_it():
    """``body_html`` skips the parser for a line of plain words (``_PLAIN``): for every such
    line, the result is the parser's and sanitiser's own."""
    plain = [line for line in _plain_lines(20_000) if _PLAIN.fullmatch(line)]
    as_itself = [line for line in plain if body_html(line) == f"<p>{line}</p>"]
    assert len(plain) > 2_000  # the sample has plain lines, and not only them
    for line in plain:
        assert body_html(line) == _rendered(line), line
    assert "P3 1.2.3 99887766" in as_itself and "see example.com" not in as_itself
    assert body_html("plain words, with commas") == "<p>plain words, with commas</p>"
    # Lines the parser would act on are not plain.
    for line in ["- a", "1. a", "1.", "a@b", "x:y", "a  ", " a", "a\nb", "a & b", "<a>"]:
        assert not _PLAIN.fullmatch(line), line


@pytest.mark.parametrize(
    "body",
    ["# not a heading", "---", "| a | b |\n|---|---|\n| 1 | 2 |", "Setext\n==="],
)
def test_headings_rules_and_tables_stay_text(body):
    html = body_html(body)
    assert not re.search(r"<(h\d|hr|table)\b", html), html


def test_images_are_never_rendered():
    html = body_html("![cat](https://example.com/cat.png)")
    assert "<img" not in html
    # The image syntax degrades to a plain link a reader chooses to follow.
    assert f'<a href="https://example.com/cat.png" {REL}>cat</a>' in html


def test_raw_html_is_shown_as_text():
    assert body_html("<b>hi</b> <script>alert(1)</script>") == (
        "<p>&lt;b&gt;hi&lt;/b&gt; &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )


@pytest.mark.parametrize(
    ("body", "href"),
    [
        ("[docs](https://example.com/docs)", "https://example.com/docs"),
        ("[plain](http://example.com/)", "http://example.com/"),
        ("[mail](mailto:ops@example.com)", "mailto:ops@example.com"),
        ("<https://example.com/auto>", "https://example.com/auto"),
        ("see https://example.com/a?b=1&c=2 now", "https://example.com/a?b=1&amp;c=2"),
        ("see www.example.com now", "http://www.example.com"),
    ],
)
def test_http_https_and_mailto_links_get_rel_noopener_noreferrer_nofollow(body, href):
    html = body_html(body)
    assert f'<a href="{href}" {REL}>' in html, html
    assert html.count("<a ") == 1


@pytest.mark.parametrize(
    "body",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](file:///etc/passwd)",
        "[x](/rooms/general/)",
        "[x](//evil.example/)",
        "[x](ftp://example.com/)",
        "<javascript:alert(1)>",
    ],
)
def test_links_of_other_schemes_and_relative_links_are_not_links(body):
    html = body_html(body)
    assert "<a" not in html, html
    assert "href" not in html


def test_bare_email_addresses_stay_text():
    assert body_html("write to ops@example.com") == "<p>write to ops@example.com</p>"


@pytest.mark.parametrize(
    "body",
    [
        '<img src=x onerror="alert(1)">',
        '[x](https://example.com/" onmouseover="alert(1))',
        '[x](https://example.com/ "title" onclick=alert(1))',
        "`<svg onload=alert(1)>`",
        "<a href='javascript:alert(1)'>x</a>",
        "<style>body{display:none}</style>",
        "<iframe src=https://example.com></iframe>",
    ],
)
def test_no_tag_outside_the_subset_and_no_attribute_but_href_rel_start_survive(body):
    html = body_html(body)
    found = Elements(html)
    assert found.tags <= {"p", "code", "a", "br"}, html
    assert found.attributes <= {"href", "rel"}, html


def test_plain_text_is_what_the_html_shows():
    assert body_text("**Deploy** is `done`, see https://example.com &amp; <b>") == (
        "Deploy is done, see https://example.com & <b>"
    )
    assert body_text("- one\n- two\n\n> three") == "one two three"


@pytest.mark.django_db
def test_frames_carry_the_html_and_the_stored_body_stays_the_users_text(room, alice):
    body = "**ship it** <script>x</script>"
    message, _ = services.message_post(room=room, author=alice, body=body)
    message.refresh_from_db()
    assert message.body == body
    expected = body_html(body)
    assert message_payload(message)["html"] == expected
    assert message_payload(message)["body"] == body
    assert catchup_frames(message, {})[0]["html"] == expected
    edited = services.message_edit(message=message, user=alice, body="_edited_")
    assert edited_payload(edited)["html"] == "<p><em>edited</em></p>"
    assert edited_payload(edited)["body"] == "_edited_"


@pytest.mark.django_db
def test_the_room_page_shows_the_same_html_with_the_written_text_beside_it(client, room, alice):
    services.message_post(room=room, author=alice, body="see **this** <img src=x onerror=y>")
    client.force_login(alice)
    page = client.get(room.get_absolute_url()).content.decode()
    assert body_html("see **this** <img src=x onerror=y>") in page
    assert 'data-body="see **this** &lt;img src=x onerror=y&gt;"' in page
    assert "<img" not in page


@pytest.mark.django_db
def test_a_mention_notification_quotes_the_message_as_the_room_shows_it(room, alice):
    user_create("bob")
    services.message_post(room=room, author=alice, body="@bob **please** review `main`")
    notification = Notification.objects.get(audience=Notification.Audience.MENTION)
    assert notification.text.endswith(": @bob please review main")


@pytest.mark.django_db
def test_the_admin_shows_messages_formatted_and_sanitised(admin_client, room, alice):
    message, _ = services.message_post(room=room, author=alice, body="**admin** <svg onload=x>")
    listing = admin_client.get("/admin/rooms/message/").content.decode()
    assert "<strong>admin</strong> &lt;svg onload=x&gt;" in listing
    assert "<svg onload" not in listing
    detail = admin_client.get(f"/admin/rooms/message/{message.pk}/change/").content.decode()
    assert "<strong>admin</strong> &lt;svg onload=x&gt;" in detail


@pytest.mark.django_db
def test_a_reply_quotes_its_parent_as_shown_in_plain_text_on_every_path(client, room, alice):
    parent, _ = services.message_post(room=room, author=alice, body="- **ship** `v2`\n- <b>now</b>")
    reply, _ = services.message_post(room=room, author=alice, body="ok", reply_to=parent)
    assert message_payload(reply)["reply"]["excerpt"] == "ship v2 <b>now</b>"
    client.force_login(alice)
    page = client.get(room.get_absolute_url()).content.decode()
    assert '<span class="quote-text">ship v2 &lt;b&gt;now&lt;/b&gt;</span>' in page
