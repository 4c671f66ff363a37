"""Search in headless Chromium on the real server: from the header's box to the message."""

import re

import pytest

from .support.browser import sign_up

pytestmark = [pytest.mark.server, pytest.mark.browser]


def test_search_from_the_header_opens_the_message_in_context(server, browser):
    page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
    sign_up(page, server.url, "alice")
    page.fill("form.new-room input[name=name]", "Ops")
    page.click("text=Create room")
    page.wait_for_url(re.compile(re.escape(server.url) + r"/rooms/ops/$"))
    page.wait_for_selector("body[data-chat-state=open]")
    for text in ("good morning", "the deployment finished <script>x</script>", "lunch?"):
        page.fill("#message-input", text)
        page.press("#message-input", "Enter")
        page.locator("#messages li[data-id] .body", has_text=text).wait_for()
    seq = page.locator("#messages li[data-id]", has_text="deployment").get_attribute("data-seq")

    page.fill("form.site-search input[name=q]", "deplo")
    page.press("form.site-search input[name=q]", "Enter")
    page.wait_for_url(server.url + "/search/?q=deplo")
    hit = page.locator(".search-hit")
    assert hit.count() == 1
    assert hit.locator(".search-hit-room").text_content() == "Ops"
    assert hit.locator(".search-hit-author").text_content() == "alice"
    assert hit.locator("mark").text_content() == "deployment"
    assert "<script>x</script>" in hit.locator(".search-hit-snippet").text_content()

    hit.locator("a").click()
    page.wait_for_url(f"{server.url}/rooms/ops/?around={seq}")
    page.wait_for_selector("body[data-chat-state=open]")
