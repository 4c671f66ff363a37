"""Finding one's way in headless Chromium: the conversations sidebar with live unread badges in
two tabs of one user and a second user, read markers as messages are seen, scroll-back to the
first message, ``?around=<seq>``, and the phone-width layout."""

import json
import re

import pytest
from playwright.sync_api import Page, expect

from .support.server import LiveServer, manage, room_create

pytestmark = [pytest.mark.server, pytest.mark.browser]

expect.set_options(timeout=10_000)
PHONE = {"width": 375, "height": 667}


def open_page(context, server: LiveServer, path: str) -> Page:
    page = context.new_page()
    page.goto(server.url + path)
    if path.startswith("/rooms/") and path != "/rooms/":
        expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    else:
        expect(page.locator("body")).to_have_attribute("data-notifications-state", "open")
    return page


def entry(page: Page, path: str):
    """A room's link in the sidebar."""
    return page.locator(f'#conversation-list a[href="{path}"]')


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    expect(page.locator("#messages > li:not(.pending) .body").filter(has_text=text)).to_have_count(
        1
    )


def shell(server: LiveServer, code: str):
    return json.loads(manage(server.env, "shell", "-c", code).stdout.strip().splitlines()[-1])


FILL = """
import json
from django.contrib.auth import get_user_model
from rooms.models import Room
from rooms.services import message_create, message_delete, message_edit
room = Room.objects.get(slug={slug!r})
author = get_user_model().objects.get(username={author!r})
made = [message_create(room=room, author=author, body=f"old {{i}}") for i in range({count})]
message_edit(message=made[5], user=author, body="old 5, edited")
message_delete(message=made[7], user=author)
print(json.dumps([m.seq for m in made]))
"""


def test_badges_rise_in_every_tab_and_clear_in_all_when_read_in_one(server, open_as):
    alice, client = open_as("alice-badges")
    bob, _ = open_as("bob-badges")
    first = room_create(client, "Badges one")
    second = room_create(client, "Badges two")
    for path in (first, second):
        open_page(bob, server, path).close()  # bob joins both

    bob_tab = open_page(bob, server, "/notifications/")
    bob_other_tab = open_page(bob, server, second)
    alice_page = open_page(alice, server, first)
    for page in (bob_tab, bob_other_tab):
        expect(entry(page, first)).to_have_attribute("data-unread", "0")

    send(alice_page, "are you there?")
    send(alice_page, "hello?")
    for page in (bob_tab, bob_other_tab):
        expect(entry(page, first)).to_have_attribute("data-unread", "2")
        # Latest activity first, and bold (the "unread" class) while there is something new.
        expect(page.locator("#conversation-list li").first).to_have_attribute(
            "data-slug", first.split("/")[2]
        )
        expect(page.locator("#conversation-list li.unread a")).to_have_attribute("href", first)

    # Bob opens the room in a third tab and sees the messages: every tab clears the badge.
    reading = open_page(bob, server, first)
    expect(reading.locator("#unread-divider")).to_have_count(1)
    for page in (bob_tab, bob_other_tab, reading):
        expect(entry(page, first)).to_have_attribute("data-unread", "0")
    expect(bob_tab.locator("#conversation-list li.unread")).to_have_count(0)
    # The author's own messages never counted for her.
    expect(entry(alice_page, first)).to_have_attribute("data-unread", "0")


def test_a_hidden_tab_does_not_mark_messages_read(server, open_as):
    alice, client = open_as("alice-hidden")
    bob, _ = open_as("bob-hidden")
    path = room_create(client, "Hidden tab")
    bob_room = open_page(bob, server, path)
    watcher = open_page(bob, server, "/notifications/")
    bob_room.evaluate(
        "() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden'});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    alice_page = open_page(alice, server, path)
    send(alice_page, "while you were away")
    expect(entry(watcher, path)).to_have_attribute("data-unread", "1")
    bob_room.wait_for_timeout(1500)
    expect(entry(watcher, path)).to_have_attribute("data-unread", "1")


def test_scrolling_up_loads_every_message_once_until_the_first(server, open_as):
    alice, client = open_as("alice-scroll")
    path = room_create(client, "Long history")
    seqs = shell(server, FILL.format(slug=path.split("/")[2], author="alice-scroll", count=180))
    page = open_page(alice, server, path)
    bodies = page.locator("#messages > li.message .body")
    expect(bodies).to_have_count(50)
    # The first page of older messages goes above without moving what the reader looks at.
    first_seq = page.locator("#messages > li.message").first.get_attribute("data-seq")
    oldest_shown = page.locator(f'#messages > li[data-seq="{first_seq}"]')
    top = oldest_shown.evaluate(
        "node => { window.scrollTo(0, 60); return node.getBoundingClientRect().top; }"
    )
    expect(bodies).to_have_count(100)
    assert abs(oldest_shown.evaluate("node => node.getBoundingClientRect().top") - top) < 2
    for _ in range(40):
        if page.locator("#history-start").get_attribute("data-more") == "false":
            break
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(250)
    expect(page.locator("#history-start")).to_have_text("This is the first message of the room.")
    shown = [
        int(s)
        for s in page.locator("#messages > li.message").evaluate_all(
            "items => items.map(i => i.dataset.seq)"
        )
    ]
    expected = [s for i, s in enumerate(seqs) if i != 7]
    assert shown == expected
    expect(bodies.nth(5)).to_have_text("old 5, edited")
    expect(bodies.first).to_have_text("old 0")


def test_around_opens_the_message_highlighted_and_loads_both_ways(server, open_as):
    alice, client = open_as("alice-around")
    path = room_create(client, "Around")
    seqs = shell(server, FILL.format(slug=path.split("/")[2], author="alice-around", count=160))
    target = seqs[80]
    page = alice.new_page()
    page.goto(f"{server.url}{path}?around={target}")
    expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    marked = page.locator(f"#message-{target}")
    expect(marked).to_have_class(re.compile("target"))
    expect(marked).to_be_in_viewport()
    # A message said meanwhile waits for the newer pages instead of leaving a gap before it.
    bob, _ = open_as("bob-around")
    bob_page = open_page(bob, server, path)
    send(bob_page, "said meanwhile")
    said = int(bob_page.locator("#messages > li.message").last.get_attribute("data-seq"))
    page.wait_for_timeout(500)  # it reached alice's socket, and waits
    expect(page.locator(f"#message-{said}")).to_have_count(0)
    # Newer pages load at the bottom until the newest; older ones at the top until the first.
    for _ in range(40):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_timeout(200)
        if page.locator("#history-end").is_hidden():
            break
    expect(page.locator("#messages > li.message").last).to_have_attribute("data-seq", str(said))
    seqs.append(said)
    send(page, "a new one at the end")
    for _ in range(40):
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        if page.locator("#history-start").get_attribute("data-more") == "false":
            break
    shown = page.locator("#messages > li.message").evaluate_all(
        "items => items.map(i => Number(i.dataset.seq))"
    )
    assert shown[:-1] == [s for i, s in enumerate(seqs) if i != 7]


def test_a_reply_to_a_message_not_on_the_page_opens_around_it(server, open_as):
    alice, client = open_as("alice-reply-jump")
    path = room_create(client, "Reply jump")
    seqs = shell(server, FILL.format(slug=path.split("/")[2], author="alice-reply-jump", count=70))
    reply = f"""
from django.contrib.auth import get_user_model
from rooms.models import Message, Room
from rooms.services import message_create
room = Room.objects.get(slug={path.split("/")[2]!r})
parent = Message.objects.get(room=room, seq={seqs[2]})
message_create(room=room, author=parent.author, body="answering an old one", reply_to=parent)
print(1)
"""
    shell(server, reply)
    page = open_page(alice, server, path)
    page.locator("#messages li.message .quote").last.click()
    page.wait_for_url(re.compile(rf"\?around={seqs[2]}$"))
    expect(page.locator(f"#message-{seqs[2]}")).to_have_class(re.compile("target"))


def test_at_phone_width_the_sidebar_folds_behind_a_menu_button(server, open_as):
    alice, client = open_as("alice-phone", viewport=PHONE)
    path = room_create(client, "Phone")
    page = open_page(alice, server, path)
    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#sidebar")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(entry(page, path)).to_be_visible()
    # Nothing covers the composer: the element at its input's centre is the input itself.
    covered = page.evaluate(
        "() => { const input = document.getElementById('message-input');"
        " const r = input.getBoundingClientRect();"
        " const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
        " return hit === input ? null : (hit ? hit.outerHTML.slice(0, 80) : 'nothing'); }"
    )
    assert covered is None
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')]"
        ".filter(n => n.getBoundingClientRect().right > innerWidth + 1)"
        ".map(n => n.tagName + '.' + n.className)"
    )
    assert wide == []
    send(page, "typed on a phone")
    toggle.click()
    expect(page.locator("#sidebar")).to_be_hidden()
