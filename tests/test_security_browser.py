"""Every page works under the Content-Security-Policy in Chromium, with no violation reported."""

import pytest

from .support.browser import sign_up
from .support.server import PASSWORD, manage

pytestmark = [pytest.mark.server, pytest.mark.browser]

# Runs before the page's own scripts (Playwright injects it outside the page's policy).
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


class Watched:
    """A page whose CSP violations (events and console messages) are collected."""

    def __init__(self, browser):
        self.page = browser.new_context().new_page()
        self.page.add_init_script(LISTEN)
        self.console: list[str] = []
        self.page.on("console", self._console)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations || []") + self.console

    def visit(self, url: str, ready: str = "body") -> None:
        self.page.goto(url)
        self.page.wait_for_selector(ready)
        self.page.wait_for_load_state("networkidle")
        assert self.violations() == [], url


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def test_the_policy_is_enforced_and_the_watch_sees_a_violation(server, browser):
    """Proves the watch can fail: an injected inline script is blocked and reported."""
    watched = Watched(browser)
    watched.visit(server.url + "/")
    watched.page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__ran = true";
          document.body.append(s);
          const d = document.createElement("div");
          d.setAttribute("style", "color: red");
          document.body.append(d);
        }"""
    )
    watched.page.wait_for_function("window.__violations.length >= 2")
    assert watched.page.evaluate("window.__ran === undefined")
    joined = " ".join(watched.violations())
    assert "script-src" in joined and "style-src" in joined


def test_every_page_and_a_live_chat_work_under_the_policy(server, browser):
    alice, bob = Watched(browser), Watched(browser)
    alice.visit(server.url + "/")
    sign_up(alice.page, server.url, "alice")
    sign_up(bob.page, server.url, "bob")
    assert alice.violations() == [] and bob.violations() == []

    alice.page.fill("input[name=name]", "Lounge")
    alice.page.click("text=Create room")
    alice.page.wait_for_url(server.url + "/rooms/lounge/")
    bob.visit(server.url + "/rooms/lounge/", ready="#status.status-open")
    alice.page.wait_for_selector("#status.status-open")

    # A live exchange: the sockets connect under connect-src 'self' (ws: of this host).
    send(alice.page, "Hello under a strict policy")
    bob.page.wait_for_selector("#messages li .body >> text=Hello under a strict policy")
    send(bob.page, "Answered live")
    alice.page.wait_for_selector("#messages li .body >> text=Answered live")
    assert alice.violations() == [] and bob.violations() == []

    for path in ("/rooms/", "/rooms/lounge/members/", "/notifications/", "/password/"):
        alice.visit(server.url + path)
    alice.visit(server.url + "/dm/bob/", ready="#status.status-open")


def test_the_admin_works_under_the_policy(server, browser):
    env = {**server.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    manage(env, "createsuperuser", "--noinput", "--username", "root", "--email", "r@x.test")
    admin = Watched(browser)
    admin.visit(server.url + "/admin/login/")
    admin.page.fill("input[name=username]", "root")
    admin.page.fill("input[name=password]", PASSWORD)
    admin.page.click("input[type=submit]")
    admin.page.wait_for_url(server.url + "/admin/")
    for path in (
        "/admin/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        "/admin/rooms/room/",
        "/admin/rooms/room/add/",
        "/admin/notifications/notification/add/",
    ):
        admin.visit(server.url + path)
    # A form with the admin's own scripts: add a user through it.
    admin.page.goto(server.url + "/admin/auth/user/add/")
    admin.page.fill("input[name=username]", "zoe")
    admin.page.fill("input[name=password1]", PASSWORD)
    admin.page.fill("input[name=password2]", PASSWORD)
    admin.page.click("input[name=_save]")
    admin.page.wait_for_selector("text=was added successfully")
    assert admin.violations() == []
