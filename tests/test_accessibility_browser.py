"""Every page a person can reach passes axe-core (no violation of impact serious or critical) at
1280 px and 375 px, in the light and the dark colour scheme; the room page works by keyboard
alone with a visible focus ring, announces new messages politely, and keeps toasts off the
composer (headless Chromium against the real server)."""

import re
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

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
    Screen("search results", "/search/?q=colo"),
    Screen("search, only common words", "/search/?q=the+and"),
    Screen("room opened around a message", "{room}?around=2"),
    Screen("password change", "/password/"),
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
    # Contrast is judged on the page at rest, after a flash (the ?around= highlight) has faded.
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
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


FOCUS_RING = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return el.matches(":focus-visible") && style.outlineStyle !== "none" &&
    parseFloat(style.outlineWidth) >= 2 && style.visibility !== "hidden" &&
    parseFloat(getComputedStyle(el.closest(".actions") || el).opacity) > 0;
}"""


def tab_to(page, selector: str, key: str = "Tab", limit: int = 80) -> None:
    """Press Tab (or Shift+Tab) until the focused element matches ``selector``; it must show a
    focus ring there."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            assert page.evaluate(FOCUS_RING), f"{selector} has no visible focus ring"
            return
    raise AssertionError(f"{selector} is not reachable with {key}")


@dataclass
class Pair:
    """An owner on their room's page and a guest who can post there."""

    page: Page
    guest: httpx.Client
    guest_context: BrowserContext
    path: str


@pytest.fixture
def pair(browser, server: LiveServer):
    """Open a new room for an owner (``name``) and a guest; the contexts close at the end."""
    contexts = []

    def _pair(name: str, width: str = "desktop") -> Pair:
        clients = [signup(server.url, name), signup(server.url, name + "-guest")]
        for client in clients:
            width_px, height_px = WIDTHS[width]
            context = browser.new_context(viewport={"width": width_px, "height": height_px})
            context.add_cookies(
                [{"name": k, "value": v, "url": server.url} for k, v in client.cookies.items()]
            )
            contexts.append(context)
        path = room_create(clients[0], name.title() + " Room")
        page = contexts[-2].new_page()
        page.goto(server.url + path)
        expect(page.locator("#status")).to_have_class(re.compile("status-open"))
        return Pair(page, clients[1], contexts[-1], path)

    yield _pair
    for context in contexts:
        context.close()


def test_every_room_action_works_by_keyboard_alone_with_a_visible_focus_ring(server, pair):
    room = pair("kim")
    kim, path = room.page, room.path
    guest = room.guest_context.new_page()
    guest.goto(server.url + path)
    kim.goto(server.url + "/rooms/")

    # Open a room: Tab to its link, Enter.
    tab_to(kim, f'#room-list a[href="{path}"]')
    kim.keyboard.press("Enter")
    kim.wait_for_url(server.url + path)
    for page in (kim, guest):
        expect(page.locator("#status")).to_have_class(re.compile("status-open"))

    # Send: the composer has focus on arrival; Enter sends.
    expect(kim.locator("#message-input")).to_be_focused()
    kim.keyboard.type("first from the keyboard")
    kim.keyboard.press("Enter")
    guest.locator("#message-input").fill("a question for kim")
    guest.locator("#message-input").press("Enter")
    question = kim.locator("#messages > li[data-id]", has_text="a question for kim")
    expect(question).to_have_count(1)

    # Reply: back from the composer (Shift+Tab) to the question's Reply button.
    kim.focus("#message-input")
    tab_to(kim, "#messages li:last-child .reply-button", key="Shift+Tab")
    kim.keyboard.press("Enter")
    expect(kim.locator("#message-input")).to_be_focused()
    expect(kim.locator("#composer-context")).to_contain_text("Replying to kim-guest")
    kim.keyboard.type("the answer")
    kim.keyboard.press("Enter")
    answer = guest.locator("#messages > li[data-id]", has_text="the answer")
    expect(answer.locator(".quote")).to_contain_text("a question for kim")

    # React: the React button opens the picker on its first emoji; Escape closes it and gives
    # the focus back; Enter on an emoji reacts.
    kim.focus("#message-input")
    tab_to(kim, "#messages li:nth-last-child(2) .react-button", key="Shift+Tab")
    kim.keyboard.press("Enter")
    expect(kim.locator("#emoji-picker .emoji-choice").first).to_be_focused()
    kim.keyboard.press("Escape")
    expect(kim.locator("#emoji-picker")).to_have_count(0)
    expect(kim.locator("#messages li:nth-last-child(2) .react-button")).to_be_focused()
    kim.keyboard.press("Enter")
    kim.keyboard.press("Enter")
    expect(question.locator(".reaction")).to_have_count(1)
    expect(guest.locator(".reaction", has_text="👍")).to_have_count(1)

    # Edit: Tab to Edit on an own message; Escape cancels, Enter saves.
    kim.focus("#message-input")
    tab_to(kim, "#messages li:last-child .edit-button", key="Shift+Tab")
    kim.keyboard.press("Enter")
    expect(kim.locator("#message-input")).to_have_value("the answer")
    kim.keyboard.press("Escape")
    expect(kim.locator("#composer-context")).to_be_hidden()
    tab_to(kim, "#messages li:last-child .edit-button", key="Shift+Tab")
    kim.keyboard.press("Enter")
    kim.keyboard.press("End")
    kim.keyboard.type(", **edited**")
    kim.keyboard.press("Enter")
    expect(guest.locator("#messages li:last-child .body strong")).to_have_text("edited")

    # Delete: Enter opens the dialog on Cancel; Escape closes it back to the button; Tab to
    # Delete and Enter deletes.
    kim.focus("#message-input")
    tab_to(kim, "#messages li:last-child .delete-button", key="Shift+Tab")
    kim.keyboard.press("Enter")
    expect(kim.locator("#delete-dialog")).to_be_visible()
    kim.keyboard.press("Escape")
    expect(kim.locator("#delete-dialog")).to_be_hidden()
    expect(kim.locator("#messages li:last-child .delete-button")).to_be_focused()
    kim.keyboard.press("Enter")
    tab_to(kim, "#delete-dialog .danger-button")
    kim.keyboard.press("Enter")
    expect(guest.locator("#messages > li[data-id]", has_text="the answer")).to_have_count(0)


def test_a_new_message_is_announced_politely_alone_not_the_whole_list(server, pair):
    room = pair("lea")
    lea = room.page
    # One polite region for new messages; the list itself is not live (it would re-read it).
    assert lea.locator("#messages").get_attribute("aria-live") is None
    announcer = lea.locator("#announcer")
    expect(announcer).to_have_attribute("aria-live", "polite")

    changes_send(
        server.ws_url,
        server.url,
        room.path,
        cookie_header(room.guest),
        {"type": "message", "body": "first **news**"},
        {"type": "message", "body": "second news"},
    )
    expect(announcer).to_have_text("lea-guest: second news")
    # Lea's own message is not read back to her.
    lea.locator("#message-input").fill("mine")
    lea.locator("#message-input").press("Enter")
    expect(lea.locator("#messages > li[data-id]", has_text="mine")).to_have_count(1)
    expect(announcer).to_have_text("lea-guest: second news")


def test_a_toast_never_covers_the_composer_at_phone_width(server, pair):
    room = pair("max", width="phone")
    page = room.page

    changes_send(
        server.ws_url,
        server.url,
        room.path,
        cookie_header(room.guest),
        *({"type": "message", "body": f"@max look at this, number {n}"} for n in range(3)),
    )
    toasts = page.locator(".notification-toast")
    expect(toasts).to_have_count(3)
    composer = page.locator("#composer").bounding_box()
    for toast in toasts.all():
        box = toast.bounding_box()
        overlaps = (
            box["x"] < composer["x"] + composer["width"]
            and composer["x"] < box["x"] + box["width"]
            and box["y"] < composer["y"] + composer["height"]
            and composer["y"] < box["y"] + box["height"]
        )
        assert not overlaps, (box, composer)


def test_the_dark_scheme_and_reduced_motion_are_respected(browser, site):
    room = next(screen for screen in SCREENS if screen.name == "room with messages")
    context, page = open_screen(browser, site, room, "desktop")
    colours = "() => ['backgroundColor', 'color'].map(p => getComputedStyle(document.body)[p])"
    light = page.evaluate(colours)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(colours)
    assert light == ["rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    assert dark != light
    assert dark[0] == "rgb(13, 17, 23)"

    # A quoted message is highlighted with an animation, unless motion is unwanted.
    highlight = """() => {
      const item = document.querySelector("#messages > li[data-id]");
      item.classList.remove("highlight"); void item.offsetWidth; item.classList.add("highlight");
      return getComputedStyle(item).animationName;
    }"""
    page.emulate_media(reduced_motion="no-preference")
    assert page.evaluate(highlight) == "highlight"
    page.emulate_media(reduced_motion="reduce")
    assert page.evaluate(highlight) == "none"
    context.close()


def test_the_sidebar_opens_and_a_room_opens_by_keyboard_alone_at_phone_width(server, pair):
    room = pair("lee", width="phone")
    lee, path = room.page, room.path
    lee.goto(server.url + "/notifications/")
    sidebar = lee.locator("#sidebar")
    expect(sidebar.locator(f'a[href="{path}"]')).to_be_hidden()  # folded behind the button

    # Open the sidebar: Tab to the menu button, Enter; the focus moves into it.
    tab_to(lee, "#sidebar-toggle")
    lee.keyboard.press("Enter")
    expect(lee.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "true")
    expect(sidebar.locator(f'a[href="{path}"]')).to_be_visible()
    # Escape folds it again and gives the focus back to the button.
    lee.keyboard.press("Escape")
    expect(lee.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "false")
    expect(lee.locator("#sidebar-toggle")).to_be_focused()

    # Open a room from it: Enter on the button, Tab to the room, Enter.
    lee.keyboard.press("Enter")
    tab_to(lee, f'#sidebar a[href="{path}"]')
    lee.keyboard.press("Enter")
    lee.wait_for_url(server.url + path)
    expect(lee.locator("#status")).to_have_class(re.compile("status-open"))
