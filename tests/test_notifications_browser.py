"""Notifications in headless Chromium: the bell changes live in every tab, on every kind of page."""

import pytest

from .support.browser import sign_up
from .support.server import PASSWORD, manage

pytestmark = [pytest.mark.server, pytest.mark.browser]

# Stands in for the browser's Notification API (headless Chromium shows nothing) and lets the
# test hide the tab; it records what the page asks for and shows.
FAKE_NOTIFICATION_API = """
window.__asked = 0;
window.__shown = [];
window.__permission = "default";
window.__hidden = false;
window.Notification = class {
  constructor(title, options) { window.__shown.push({ title: title, body: options.body }); }
  addEventListener() {}
  close() {}
  static get permission() { return window.__permission; }
  static requestPermission() {
    window.__asked += 1;
    window.__permission = "granted";
    return Promise.resolve("granted");
  }
};
Object.defineProperty(document, "visibilityState", {
  get: function () { return window.__hidden ? "hidden" : "visible"; },
});
"""


def bell(page) -> str:
    return page.locator("#notifications-count").text_content()


def wait_for_bell(page, count: int) -> None:
    page.wait_for_function(
        "n => document.getElementById('notifications-count').textContent === String(n)",
        arg=count,
        timeout=10_000,
    )


def test_the_bell_counts_live_in_every_tab_and_mark_read_clears_them_all(server, browser):
    alice_context = browser.new_context()
    alice_context.add_init_script(FAKE_NOTIFICATION_API)
    rooms_tab = alice_context.new_page()
    sign_up(rooms_tab, server.url, "alice")
    rooms_tab.fill("input[name=name]", "Lobby")
    rooms_tab.click("text=Create room")
    rooms_tab.wait_for_url(server.url + "/rooms/lobby/")
    room_tab = rooms_tab  # this tab is now on the room page: it shares the room socket
    room_tab.wait_for_selector("#status.status-open")
    list_tab = alice_context.new_page()
    list_tab.goto(server.url + "/notifications/")
    list_tab.wait_for_selector("body[data-notifications-state=open]")
    assert bell(room_tab) == bell(list_tab) == "0"

    bob = browser.new_page()
    sign_up(bob, server.url, "bob")
    bob.goto(server.url + "/rooms/lobby/")
    bob.wait_for_selector("#status.status-open")
    bob.fill("#message-input", "@alice lunch? <b>now</b>")
    bob.press("#message-input", "Enter")

    # Both of alice's tabs, on different sockets, count the mention; bob's does not.
    for tab in (room_tab, list_tab):
        wait_for_bell(tab, 1)
    assert bell(bob) == "0"
    item = list_tab.locator("#notification-list li.unread").first
    assert (
        item.locator(".text").text_content()
        == "bob mentioned you in Lobby: @alice lunch? <b>now</b>"
    )
    assert item.locator(".text").get_attribute("href") == server.url + "/rooms/lobby/?around=1"
    assert list_tab.locator("#notification-list b").count() == 0  # text, never markup
    toast = room_tab.locator("#notification-toasts .notification-toast").first
    assert "lunch? <b>now</b>" in toast.text_content()

    # Desktop notifications: never asked for on load, asked on the button, shown when hidden.
    assert list_tab.evaluate("window.__asked") == 0
    assert room_tab.evaluate("window.__asked") == 0
    list_tab.click("#enable-desktop-notifications")
    list_tab.wait_for_selector("#enable-desktop-notifications", state="hidden")
    assert list_tab.evaluate("window.__asked") == 1
    list_tab.evaluate("window.__hidden = true")
    bob.fill("#message-input", "@alice are you there?")
    bob.press("#message-input", "Enter")
    wait_for_bell(list_tab, 2)
    assert list_tab.evaluate("window.__shown") == [
        {"title": "Chat", "body": "bob mentioned you in Lobby: @alice are you there?"}
    ]
    assert room_tab.evaluate("window.__shown") == []  # visible tab, no permission: in-page only
    list_tab.evaluate("window.__hidden = false")

    # Marking all read in one tab clears the bell in the other, live.
    list_tab.click("#mark-all-read")
    list_tab.wait_for_url(server.url + "/notifications/")
    wait_for_bell(room_tab, 0)
    assert bell(list_tab) == "0"
    assert list_tab.locator("#notification-list li.unread").count() == 0


def test_an_admin_broadcast_reaches_every_user_on_any_page(server, browser):
    manage(
        server.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser('root', 'root@example.org', "
        f"'{PASSWORD}')",
    )
    carol = browser.new_page()
    sign_up(carol, server.url, "carol")  # on /rooms/: the page's own notifications socket
    carol.wait_for_selector("body[data-notifications-state=open]")
    before = int(bell(carol))

    admin = browser.new_page()
    admin.goto(server.url + "/admin/login/")
    admin.fill("input[name=username]", "root")
    admin.fill("input[name=password]", PASSWORD)
    admin.click("input[type=submit]")
    admin.goto(server.url + "/admin/notifications/notification/add/")
    admin.fill("textarea[name=text]", "Maintenance at 18:00 <img src=x onerror=alert(1)>")
    admin.select_option("select[name=level]", "warning")
    admin.fill("input[name=link]", "/rooms/")
    admin.check("input[name=audience][value=everyone]")
    admin.click("input[name=_save]")
    admin.wait_for_selector("text=Notification sent to")

    wait_for_bell(carol, before + 1)
    toast = carol.locator("#notification-toasts .notification-toast").last
    assert toast.text_content() == "Maintenance at 18:00 <img src=x onerror=alert(1)>"
    assert carol.locator("#notification-toasts img").count() == 0
    carol.reload()
    assert bell(carol) == str(before + 1)  # stored, so the count survives a reload
