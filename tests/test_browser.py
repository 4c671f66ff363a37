"""Two people in two browsers sign up, open the same room and chat live (headless Chromium)."""

import os

import pytest

from .support.server import PASSWORD, manage

pytestmark = [pytest.mark.server, pytest.mark.browser]


def sign_up(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/")
    page.click("text=Sign up")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/rooms/")


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def bodies(page) -> list[str]:
    return page.locator("#messages li:not(.pending) .body").all_text_contents()


def test_two_users_chat_live_and_history_survives_a_reload(server, browser):
    alice = browser.new_context(viewport={"width": 900, "height": 640}).new_page()
    bob = browser.new_context(viewport={"width": 900, "height": 640}).new_page()
    sign_up(alice, server.url, "alice")
    sign_up(bob, server.url, "bob")

    alice.fill("input[name=name]", "Coffee Break")
    alice.click("text=Create room")
    alice.wait_for_url(server.url + "/rooms/coffee-break/")
    bob.reload()
    bob.click("text=Coffee Break")
    bob.wait_for_url(server.url + "/rooms/coffee-break/")
    for page in (alice, bob):
        page.wait_for_selector("#status.status-open")

    send(alice, "Hi Bob! <script>alert('x')</script>")
    bob.wait_for_selector("#messages li .body >> text=Hi Bob!")
    send(bob, "Hello Alice, coffee at 3?")
    alice.wait_for_selector("#messages li .body >> text=coffee at 3?")
    send(alice, "Sounds good ☕")
    for page in (alice, bob):
        page.wait_for_selector("#messages li .body >> text=Sounds good")

    expected = [
        "Hi Bob! <script>alert('x')</script>",
        "Hello Alice, coffee at 3?",
        "Sounds good ☕",
    ]
    assert bodies(alice) == expected
    assert bodies(bob) == expected
    # Text, not markup: the script tag is shown, never executed or parsed.
    assert bob.locator("#messages script").count() == 0

    if os.environ.get("CHAT_SCREENSHOT"):
        alice.screenshot(path=os.environ["CHAT_SCREENSHOT"])

    bob.reload()
    bob.wait_for_selector("#status.status-open")
    assert bodies(bob) == expected
    assert bob.locator("#messages li.own .author").all_text_contents() == ["bob"]


def test_message_written_while_the_server_is_down_is_sent_after_reconnect(server, browser):
    page = browser.new_context().new_page()
    sign_up(page, server.url, "frank")
    page.fill("input[name=name]", "Outage Room")
    page.click("text=Create room")
    page.wait_for_selector("#status.status-open")

    server.stop()
    page.wait_for_selector("#status.status-offline")
    send(page, "written offline")
    assert page.locator("#messages li.pending .body").all_text_contents() == ["written offline"]

    server.start()
    page.wait_for_selector("#status.status-open", timeout=30_000)
    page.wait_for_selector("#messages li:not(.pending) .body >> text=written offline")
    assert page.locator("#messages li.pending").count() == 0
    assert bodies(page) == ["written offline"]


LOSE_A_MESSAGE = """
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from rooms.models import Message, Room

# Stored like any message, but never broadcast: the live path "lost" it.
with transaction.atomic():
    Room.objects.filter(slug="gap-room").update(last_seq=F("last_seq") + 1)
    room = Room.objects.get(slug="gap-room")
    author = get_user_model().objects.get(username="grace")
    Message.objects.create(room=room, author=author, seq=room.last_seq, body="lost on the way")
"""


def test_a_frame_lost_by_the_live_path_is_fetched_when_the_next_one_shows_the_gap(server, browser):
    page = browser.new_context().new_page()
    sign_up(page, server.url, "grace")
    page.fill("input[name=name]", "Gap Room")
    page.click("text=Create room")
    page.wait_for_selector("#status.status-open")
    send(page, "first")
    page.wait_for_selector("#messages li .body >> text=first")

    manage(server.env, "shell", "-c", LOSE_A_MESSAGE)
    send(page, "third")
    page.wait_for_selector("#messages li .body >> text=third")
    page.wait_for_selector("#messages li .body >> text=lost on the way")
    assert bodies(page) == ["first", "lost on the way", "third"]
    seqs = page.locator("#messages li").evaluate_all("items => items.map(i => i.dataset.seq)")
    assert seqs == ["1", "2", "3"]
