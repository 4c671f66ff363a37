"""Presence and typing in two headless Chromium browsers on the real server (one uvicorn).

A room page lists who is online beside the messages (folded at phone width); a direct
conversation says whether the other person is online; "alice is typing…" shows in bob's page
while alice types, never in her own, and goes when her message arrives.
"""

import re

import pytest

from .support.browser import sign_up

pytestmark = [pytest.mark.server, pytest.mark.browser]


SHOWN_FOR = """() => {
  window.__typingShownFor = new Promise(function (resolve) {
    const box = document.getElementById("typing");
    let shown = null;
    const timer = setInterval(function () {
      const now = performance.now();
      if (shown === null && box.textContent) shown = now;
      else if (shown !== null && !box.textContent) {
        clearInterval(timer);
        resolve(now - shown);
      }
    }, 25);
  });
}"""


def page_for(browser, base_url: str, username: str, width: int = 1280):
    page = browser.new_context(viewport={"width": width, "height": 800}).new_page()
    sign_up(page, base_url, username)
    return page


def open_room(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-chat-state=open]")


def online(page) -> list[str]:
    return page.locator("#presence-list li").all_text_contents()


def test_typing_and_presence_between_two_browsers(server, browser):
    alice = page_for(browser, server.url, "alice")
    bob = page_for(browser, server.url, "bob", width=375)
    alice.fill("form.new-room input[name=name]", "Typing room")
    alice.click("text=Create room")
    alice.wait_for_url(re.compile(r".*/rooms/typing-room/$"))
    url = alice.url
    alice.wait_for_selector("body[data-chat-state=open]")
    open_room(bob, url)

    # Beside the messages at 1280 px, folded at 375 px until opened.
    alice.wait_for_function(
        "() => document.querySelectorAll('#presence-list li').length === 2", timeout=10_000
    )
    assert online(alice) == ["alice (you)", "bob"]
    assert alice.locator("#presence").get_attribute("open") is not None
    assert bob.locator("#presence").get_attribute("open") is None
    assert not bob.locator("#presence-list").is_visible()
    bob.click("#presence summary")
    assert bob.locator("#presence-list").is_visible()
    assert bob.locator("#presence-count").text_content() == "(2)"

    alice.locator("#message-input").press_sequentially("Hello b", delay=30)
    bob.wait_for_selector("#typing >> text=alice is typing…", timeout=10_000)
    assert alice.locator("#typing").text_content() == ""
    alice.locator("#message-input").press("Enter")
    bob.wait_for_selector("#messages li .body >> text=Hello b")
    assert bob.locator("#typing").text_content() == ""

    # bob closes his page: alice's list drops him.
    bob.context.close()
    alice.wait_for_function(
        "() => document.querySelectorAll('#presence-list li').length === 1", timeout=10_000
    )
    assert online(alice) == ["alice (you)"]


def test_typing_disappears_after_six_seconds_without_a_new_frame(server, browser):
    carol = page_for(browser, server.url, "carol")
    dave = page_for(browser, server.url, "dave")
    carol.fill("form.new-room input[name=name]", "Quiet room")
    carol.click("text=Create room")
    carol.wait_for_url(re.compile(r".*/rooms/quiet-room/$"))
    carol.wait_for_selector("body[data-chat-state=open]")
    open_room(dave, carol.url)
    # Timed in dave's page itself: from the indicator showing to its going, polled every 25 ms.
    dave.evaluate(SHOWN_FOR)
    carol.locator("#message-input").press_sequentially("x", delay=10)
    dave.wait_for_selector("#typing >> text=carol is typing…", timeout=10_000)
    shown_for = dave.evaluate("window.__typingShownFor")
    assert 5900 <= shown_for <= 7000, shown_for


def test_a_direct_conversation_shows_whether_the_other_person_is_online(server, browser):
    erin = page_for(browser, server.url, "erin")
    frank = page_for(browser, server.url, "frank")
    erin.goto(server.url + "/dm/frank/")
    erin.wait_for_selector("body[data-chat-state=open]")
    # frank is on the rooms page (his notifications socket): online.
    erin.wait_for_selector("#direct-presence >> text=frank is online", timeout=10_000)
    frank.context.close()
    erin.wait_for_selector("#direct-presence >> text=frank is offline", timeout=10_000)
