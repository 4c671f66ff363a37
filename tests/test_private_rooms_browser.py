"""Private rooms and direct conversations in headless Chromium, on the real server.

A member added to a private room sees it appear in their open rooms list without a reload and
chats there; a non-member gets a 404 and never sees it listed; the members page's "Message" link
and ``/dm/<name>/`` reach one conversation from both sides; a removed member's open room page
stops (4403).
"""

import json
import re

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from .support.browser import sign_up as browser_sign_up

pytestmark = [pytest.mark.server, pytest.mark.browser]

# Records the close code of every WebSocket the page opens (the page's behaviour is unchanged).
RECORD_CLOSES = """
(function () {
  const Native = window.WebSocket;
  window.__closes = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("close", function (event) {
        window.__closes.push({ url: String(url), code: event.code });
      });
    }
  };
})();
"""


def sign_up(browser, base_url: str, username: str):
    """A page in a browser context of its own, signed up as ``username``, on /rooms/."""
    context = browser.new_context(viewport={"width": 900, "height": 700})
    context.add_init_script(RECORD_CLOSES)
    page = context.new_page()
    browser_sign_up(page, base_url, username)
    return page


def private_room_create(page, base_url: str, name: str) -> str:
    """Create a private room through the form; returns its path."""
    page.fill("form.new-room input[name=name]", name)
    page.check("form.new-room input[name=private]")
    page.click("text=Create room")
    page.wait_for_url(re.compile(re.escape(base_url) + r"/rooms/[^/]+/$"))
    page.wait_for_selector("body[data-chat-state=open]")
    return page.url.removeprefix(base_url)


def member_add(page, username: str) -> None:
    """On a room page: open its members page and add ``username``."""
    page.click("a.members-link")
    page.fill("form.add-member input[name=username]", username)
    page.click("form.add-member button[type=submit]")
    page.wait_for_selector(f"#member-list li[data-username={username}]")


def open_room(page, base_url: str, path: str) -> None:
    page.goto(base_url + path)
    page.wait_for_selector("body[data-chat-state=open]")


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def wait_for_message(pages, text: str) -> None:
    """Wait until every page shows ``text`` as a stored message (its sender's own copy too)."""
    for page in pages:
        page.locator("#messages li[data-id] .body", has_text=text).wait_for()


def bodies(page) -> list[str]:
    return page.locator("#messages li[data-id] .body").all_text_contents()


def test_a_private_room_appears_live_for_its_members_only_and_a_conversation_is_one_room(
    server, browser
):
    alice = sign_up(browser, server.url, "alice")
    bob = sign_up(browser, server.url, "bob")
    carol = sign_up(browser, server.url, "carol")
    bob.wait_for_selector("body[data-notifications-state=open]")
    bob.evaluate("window.__sameDocument = true")  # gone if the page reloads

    path = private_room_create(alice, server.url, "Secret <Plans>")
    slug = path.split("/")[2]
    member_add(alice, "bob")

    # bob's rooms list shows the room at the top, live, marked private, its name as text.
    item = bob.locator(f'#room-list li[data-slug="{slug}"]')
    item.wait_for()
    assert bob.evaluate("window.__sameDocument") is True
    assert bob.locator("#room-list li").first.get_attribute("data-slug") == slug
    assert "kind-private" in item.get_attribute("class")
    assert item.locator(".kind").text_content() == "Private"
    assert item.locator("a").text_content() == "Secret <Plans>"
    assert item.locator("a").get_attribute("href") == path
    assert bob.locator("#room-list li.empty").count() == 0
    # The same frame again (or a hostile one) adds nothing twice and renders no markup.
    bob.evaluate(
        """slug => {
          const room = {slug: slug, name: "dup", kind: "private", url: "/rooms/" + slug + "/"};
          document.dispatchEvent(new CustomEvent("chat:frame",
            {detail: {type: "room.added", room: room}}));
          document.dispatchEvent(new CustomEvent("chat:frame", {detail: {type: "room.added",
            room: {slug: "x", name: "<img src=x onerror=window.__xss=1>", kind: "direct",
                   url: "javascript:window.__xss=1"}}}));
        }""",
        slug,
    )
    assert item.count() == 1
    assert item.locator("a").text_content() == "Secret <Plans>"
    hostile = bob.locator('#room-list li[data-slug="x"] a')
    assert hostile.text_content() == "<img src=x onerror=window.__xss=1>"
    assert hostile.get_attribute("href") == "/rooms/x/"
    assert bob.locator("#room-list img").count() == 0

    # bob opens it from the list and they chat.
    item.locator("a").click()
    bob.wait_for_url(server.url + path)
    bob.wait_for_selector("body[data-chat-state=open]")
    open_room(alice, server.url, path)
    send(alice, "Only the two of us here")
    wait_for_message((alice, bob), "Only the two of us here")
    send(bob, "Good, nobody else can read this")
    wait_for_message((alice, bob), "nobody else can read this")
    expected = ["Only the two of us here", "Good, nobody else can read this"]
    assert bodies(alice) == bodies(bob) == expected

    # carol: the room is a 404 like any unknown room, and her list never names it.
    response = carol.goto(server.url + path)
    assert response.status == 404
    page_404 = response.text()
    unknown = carol.goto(server.url + "/rooms/no-such-room/")
    assert unknown.status == 404
    assert unknown.text() == page_404
    carol.goto(server.url + "/rooms/")
    assert slug not in carol.content()
    assert "Secret" not in carol.locator("#room-list").text_content()

    # A conversation from bob's name on the members page; bob, on his rooms list, sees it
    # appear, and /dm/alice/ takes him to the same room.
    bob.goto(server.url + "/rooms/")
    bob.wait_for_selector("body[data-notifications-state=open]")
    alice.click("a.members-link")
    alice.locator("#member-list li[data-username=bob] a", has_text="Message").click()
    alice.wait_for_url(re.compile(re.escape(server.url) + r"/rooms/[^/]+/$"))
    alice.wait_for_selector("body[data-chat-state=open]")
    direct_path = alice.url.removeprefix(server.url)
    assert direct_path != path
    assert alice.locator("h1").text_content() == "bob"
    direct_item = bob.locator(f'#room-list li[data-slug="{direct_path.split("/")[2]}"]')
    direct_item.wait_for()
    assert "kind-direct" in direct_item.get_attribute("class")
    assert direct_item.locator("a").text_content() == "alice"

    bob.goto(server.url + "/dm/alice/")
    bob.wait_for_url(server.url + direct_path)
    bob.wait_for_selector("body[data-chat-state=open]")
    assert bob.locator("h1").text_content() == "alice"
    send(bob, "Just you and me")
    wait_for_message((alice, bob), "Just you and me")
    send(alice, "Indeed")
    wait_for_message((alice, bob), "Indeed")
    assert bodies(alice) == bodies(bob) == ["Just you and me", "Indeed"]
    assert carol.goto(server.url + direct_path).status == 404


def _session_cookie(page) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())


def test_a_removed_members_open_room_page_stops(server, browser):
    owner = sign_up(browser, server.url, "dora")
    member = sign_up(browser, server.url, "erin")
    path = private_room_create(owner, server.url, "Book Club")
    member_add(owner, "erin")
    open_room(member, server.url, path)

    # A second socket of erin's, outside the page: the server itself closes it with 4403.
    with ws_connect(
        server.ws_url + "/ws" + path,
        origin=server.url,
        additional_headers={"Cookie": _session_cookie(member)},
        open_timeout=10,
    ) as raw:
        raw.send(json.dumps({"type": "sync", "after": 0}))  # answered once it has joined
        while json.loads(raw.recv(timeout=10))["type"] != "synced":
            pass
        owner.locator("#member-list li[data-username=erin] button[name=remove]").click()
        owner.wait_for_selector("#member-list li[data-username=erin]", state="detached")
        member.wait_for_selector("body[data-chat-state=closed]", timeout=10_000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                raw.recv(timeout=10)
        assert closed.value.rcvd.code == 4403

    # The page stopped on 4403: it says so and does not try again (a retry would get 4404).
    assert member.locator("#status").text_content() == "You are no longer a member of this room"
    member.wait_for_timeout(1500)
    closes = member.evaluate("window.__closes.filter(c => c.url.includes('/ws/rooms/'))")
    assert [c["code"] for c in closes] == [4403]
    assert member.goto(server.url + path).status == 404
