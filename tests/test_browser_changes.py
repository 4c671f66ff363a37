"""The room page's change contract in headless Chromium: edit, delete, react and reply reach
the other user and a second tab of the author live, survive a reload and a reconnect; a send
is stored and shown exactly once whatever happens to its socket (idempotent client ids)."""

import json
import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from .support.server import LiveServer, manage, room_create, signup

pytestmark = [pytest.mark.server, pytest.mark.browser]

expect.set_options(timeout=10_000)
RECONNECT_MS = 30_000  # backoff after a server restart: up to a few seconds, with jitter


def room_page(context, server: LiveServer, path: str) -> Page:
    page = context.new_page()
    page.goto(server.url + path)
    expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    return page


def three_pages(open_as, server: LiveServer, name: str):
    """Alice (the room's owner) in two tabs and Bob in a third, all on a new room."""
    alice, client = open_as(f"alice-{name}")
    bob, _ = open_as(f"bob-{name}")
    path = room_create(client, f"Room {name}")
    return (
        room_page(alice, server, path),
        room_page(alice, server, path),
        room_page(bob, server, path),
    )


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def message(page: Page, text: str):
    """The stored message whose text is exactly ``text``."""
    body = page.locator(".body", has_text=re.compile("^" + re.escape(text) + "$"))
    return page.locator("#messages > li:not(.pending)").filter(has=body)


def bodies(page: Page) -> list[str]:
    return page.locator("#messages > li:not(.pending) .body").all_text_contents()


def reload(page: Page) -> None:
    page.reload()
    expect(page.locator("#status")).to_have_class(re.compile("status-open"))


def stored(server: LiveServer, **filters: str) -> list[dict]:
    """The database's messages matching ``filters``: body, client id and whether deleted."""
    code = (
        "import json; from rooms.models import Message; print(json.dumps([{'body': m.body, "
        "'client_id': m.client_id, 'deleted': m.deleted is not None} for m in "
        f"Message.objects.filter(**{filters!r}).order_by('seq')]))"
    )
    # The last line: Django's shell may first say what it imported.
    return json.loads(manage(server.env, "shell", "-c", code).stdout.strip().splitlines()[-1])


def test_edits_reach_everyone_live_and_up_arrow_edits_the_last_message(server, open_as):
    alice, alice_tab, bob = three_pages(open_as, server, "edit")
    send(alice, "first draft")
    send(alice, "second thought")
    for page in (alice, alice_tab, bob):
        expect(message(page, "second thought")).to_have_count(1)

    # Up in the empty composer edits the last own message; Escape cancels it.
    alice.focus("#message-input")
    alice.keyboard.press("ArrowUp")
    expect(alice.locator("#message-input")).to_have_value("second thought")
    expect(message(alice, "second thought")).to_have_class(re.compile("editing"))
    alice.keyboard.press("Escape")
    expect(alice.locator("#message-input")).to_have_value("")
    expect(alice.locator("#composer-context")).to_be_hidden()
    alice.keyboard.press("ArrowUp")
    alice.fill("#message-input", "second thought, revised")
    alice.keyboard.press("Enter")

    # The Edit button does the same for an older message.
    message(alice, "first draft").get_by_role("button", name="Edit", exact=True).click()
    expect(alice.locator("#message-input")).to_have_value("first draft")
    alice.fill("#message-input", "first draft, fixed")
    alice.keyboard.press("Enter")

    expected = ["first draft, fixed", "second thought, revised"]
    for page in (alice, alice_tab, bob):
        expect(page.locator("#messages > li:not(.pending) .body")).to_have_text(expected)
        expect(message(page, "first draft, fixed").locator(".edited")).to_be_visible()
    # Only the author can edit; Bob does not own the room, so he cannot delete either.
    bob_view = message(bob, "first draft, fixed")
    expect(bob_view.get_by_role("button", name="Reply", exact=True)).to_have_count(1)
    expect(bob_view.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
    expect(bob_view.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
    # Another user's name opens a direct conversation with them; one's own name does not.
    author = bob_view.locator(".author")
    expect(author).to_have_attribute("href", "/dm/alice-edit/")
    assert message(alice, "first draft, fixed").locator("a.author").count() == 0

    for page in (alice_tab, bob):
        reload(page)
        assert bodies(page) == expected
        expect(message(page, "second thought, revised").locator(".edited")).to_be_visible()


def test_deletes_ask_first_and_disappear_everywhere_live_and_after_a_reload(server, open_as):
    alice, alice_tab, bob = three_pages(open_as, server, "delete")
    send(alice, "keep this")
    send(bob, "oops, wrong room")
    send(bob, "spam from bob")
    for page in (alice, alice_tab, bob):
        expect(message(page, "spam from bob")).to_have_count(1)

    # Cancelling the dialog deletes nothing.
    message(bob, "oops, wrong room").get_by_role("button", name="Delete", exact=True).click()
    dialog = bob.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("oops, wrong room")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    bob.wait_for_timeout(300)
    expect(message(alice, "oops, wrong room")).to_have_count(1)

    message(bob, "oops, wrong room").get_by_role("button", name="Delete", exact=True).click()
    dialog.locator("button[value=confirm]").click()
    # The room's owner may delete anybody's message (and Bob may not delete hers).
    expect(
        message(bob, "keep this").get_by_role("button", name="Delete", exact=True)
    ).to_have_count(0)
    message(alice, "spam from bob").get_by_role("button", name="Delete", exact=True).click()
    alice.locator("#delete-dialog button[value=confirm]").click()

    for page in (alice, alice_tab, bob):
        expect(page.locator("#messages > li:not(.pending) .body")).to_have_text(["keep this"])
    for page in (alice_tab, bob):
        reload(page)
        assert bodies(page) == ["keep this"]
    assert [(row["body"], row["deleted"]) for row in stored(server, room__slug="room-delete")] == [
        ("keep this", False),
        ("", True),
        ("", True),
    ]


def test_reactions_toggle_live_for_everyone_by_mouse_and_keyboard(server, open_as):
    alice, alice_tab, bob = three_pages(open_as, server, "react")
    send(bob, "lunch at noon?")
    for page in (alice, alice_tab, bob):
        expect(message(page, "lunch at noon?")).to_have_count(1)

    # Alice reacts with the keyboard: the React button opens the picker, Enter picks 👍.
    react = message(alice, "lunch at noon?").get_by_role("button", name="React with an emoji")
    react.focus()
    alice.keyboard.press("Enter")
    expect(alice.get_by_role("button", name="React with 👍")).to_be_focused()
    alice.keyboard.press("Enter")
    for page in (alice, alice_tab, bob):
        chip = message(page, "lunch at noon?").locator(".reaction")
        expect(chip).to_have_count(1)
        expect(chip).to_have_text("👍 1")
        expect(chip).to_have_attribute("title", "alice-react")
    expect(message(alice, "lunch at noon?").locator(".reaction")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(message(bob, "lunch at noon?").locator(".reaction")).to_have_attribute(
        "aria-pressed", "false"
    )

    # Bob clicks the chip to add his; a second emoji from the picker gets its own chip.
    message(bob, "lunch at noon?").locator(".reaction").click()
    message(bob, "lunch at noon?").get_by_role("button", name="React with an emoji").click()
    bob.get_by_role("button", name="React with 🎉").click()
    for page in (alice, alice_tab, bob):
        chips = message(page, "lunch at noon?").locator(".reaction")
        expect(chips).to_have_text(["👍 2", "🎉 1"])
        expect(chips.first).to_have_attribute("title", "alice-react, bob-react")

    # Clicking a chip again takes one's own reaction back.
    message(alice_tab, "lunch at noon?").locator(".reaction").first.click()
    message(bob, "lunch at noon?").locator(".reaction").nth(1).click()
    for page in (alice, alice_tab, bob):
        chip = message(page, "lunch at noon?").locator(".reaction")
        expect(chip).to_have_text(["👍 1"])
        expect(chip).to_have_attribute("title", "bob-react")

    for page in (alice, bob):
        reload(page)
        chip = message(page, "lunch at noon?").locator(".reaction")
        expect(chip).to_have_text(["👍 1"])
        expect(chip).to_have_attribute("aria-pressed", "true" if page is bob else "false")


FILL_ROOM = """
from django.contrib.auth import get_user_model
from rooms.models import Room
from rooms.services import message_create
room = Room.objects.get(slug="room-reply")
alice = get_user_model().objects.get(username="alice-reply")
message_create(room=room, author=alice, body="the original question")
for i in range(40):
    message_create(room=room, author=alice, body=f"filler {i}")
"""


def test_a_reply_quotes_its_parent_everywhere_and_the_quote_leads_to_it(server, open_as):
    alice, alice_tab, bob = three_pages(open_as, server, "reply")
    # Stored by another process: the live path does not see them, a reload does.
    manage(server.env, "shell", "-c", FILL_ROOM)
    for page in (alice, alice_tab, bob):
        reload(page)
        expect(message(page, "filler 39")).to_have_count(1)

    # Escape drops a reply being written, and keeps its text.
    parent = message(bob, "the original question")
    parent.get_by_role("button", name="Reply", exact=True).click()
    expect(bob.locator("#composer-context")).to_contain_text("Replying to alice-reply")
    bob.fill("#message-input", "never mind")
    bob.keyboard.press("Escape")
    expect(bob.locator("#composer-context")).to_be_hidden()
    expect(bob.locator("#message-input")).to_have_value("never mind")
    bob.fill("#message-input", "")

    parent.get_by_role("button", name="Reply", exact=True).click()
    expect(bob.locator("#message-input")).to_be_focused()
    bob.keyboard.type("the answer is 42")
    bob.keyboard.press("Enter")
    for page in (alice, alice_tab, bob):
        quote = message(page, "the answer is 42").locator(".quote")
        expect(quote.locator(".quote-author")).to_have_text("alice-reply")
        expect(quote.locator(".quote-text")).to_have_text("the original question")

    # Clicking the quote scrolls the parent into view and highlights it.
    target = message(alice, "the original question")
    alice.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert not in_viewport(target)
    message(alice, "the answer is 42").locator(".quote").click()
    expect(target).to_have_class(re.compile("highlight"))
    alice.wait_for_function(
        "() => { const r = document.querySelector('#message-1').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight; }"
    )

    reload(alice_tab)
    quote = message(alice_tab, "the answer is 42").locator(".quote")
    expect(quote).to_contain_text("the original question")
    expect(quote).to_have_attribute("data-parent-seq", "1")


def in_viewport(locator) -> bool:
    return locator.evaluate(
        "node => { const r = node.getBoundingClientRect();"
        " return r.bottom > 0 && r.top < innerHeight; }"
    )


CHANGE_WHILE_AWAY = """
from django.contrib.auth import get_user_model
from rooms.models import Message
from rooms.services import message_create, message_delete, message_edit, reaction_set
users = get_user_model().objects
alice, bob = users.get(username="alice-away"), users.get(username="bob-away")
edited = Message.objects.get(body="to be edited")
message_edit(message=edited, user=alice, body="edited while you were away")
message_delete(message=Message.objects.get(body="to be deleted"), user=alice)
reaction_set(message=Message.objects.get(body="to get a reaction"), user=bob, emoji="🎉", on=True)
message_create(room=edited.room, author=bob, body="new while you were away")
"""


def test_changes_made_while_a_page_was_disconnected_arrive_on_reconnect(server, open_as):
    alice, client = open_as("alice-away")
    signup(server.url, "bob-away")
    page = room_page(alice, server, room_create(client, "Room away"))
    for text in ("to be edited", "to be deleted", "to get a reaction"):
        send(page, text)
        expect(message(page, text)).to_have_count(1)
    message(page, "to be deleted").get_by_role("button", name="Reply", exact=True).click()

    server.stop()
    expect(page.locator("#status")).to_have_class(re.compile("status-offline"))
    send(page, "a reply to a message deleted meanwhile")
    pending = page.locator("#messages > li.pending")
    expect(pending.locator(".send-state")).to_have_text("Not sent yet (waiting for connection)")
    manage(server.env, "shell", "-c", CHANGE_WHILE_AWAY)
    server.start()

    expect(page.locator("#status")).to_have_class(re.compile("status-open"), timeout=RECONNECT_MS)
    expect(page.locator("#messages > li:not(.pending) .body")).to_have_text(
        ["edited while you were away", "to get a reaction", "new while you were away"]
    )
    expect(message(page, "edited while you were away").locator(".edited")).to_be_visible()
    chip = message(page, "to get a reaction").locator(".reaction")
    expect(chip).to_have_text("🎉 1")
    expect(chip).to_have_attribute("title", "bob-away")
    # The reply queued offline is refused (its parent is gone): its text stays, marked.
    expect(pending).to_have_class(re.compile("failed"))
    expect(pending.locator(".quote")).to_contain_text("Message deleted")
    expect(pending.locator(".send-state")).to_have_text("Not sent: No such message in this room.")
    expect(page.locator("#composer-error")).to_have_text("No such message in this room.")
    pending.get_by_role("button", name="Discard").click()
    expect(pending).to_have_count(0)
    assert stored(server, body="a reply to a message deleted meanwhile") == []


CHANGE_ELSEWHERE = """
from django.contrib.auth import get_user_model
from rooms.models import Message
from rooms.services import message_edit, reaction_set
gina = get_user_model().objects.get(username="gina")
message_edit(message=Message.objects.get(body="one"), user=gina, body="one, edited elsewhere")
reaction_set(message=Message.objects.get(body="two"), user=gina, emoji="😮", on=True)
"""


def test_changes_lost_by_the_live_path_are_fetched_when_the_next_one_shows_the_gap(server, open_as):
    context, client = open_as("gina")
    page = room_page(context, server, room_create(client, "Room gap"))
    for text in ("one", "two"):
        send(page, text)
        expect(message(page, text)).to_have_count(1)
    # Another process stores an edit and a reaction: their frames never reach this server.
    manage(server.env, "shell", "-c", CHANGE_ELSEWHERE)
    send(page, "three")

    # "three" (seq 5) shows the gap after seq 2; the sync brings both changes and "three"
    # again, which updates the node already shown instead of adding a second one.
    expect(message(page, "one, edited elsewhere").locator(".edited")).to_be_visible()
    expect(message(page, "two").locator(".reaction")).to_have_text("😮 1")
    expect(page.locator("#messages > li")).to_have_count(3)
    assert bodies(page) == ["one, edited elsewhere", "two", "three"]
    seqs = page.locator("#messages > li").evaluate_all("items => items.map(i => i.dataset.seq)")
    assert seqs == ["1", "2", "5"]


def route_dropping(page: Page, *, what: str):
    """Route the page's room sockets through the test; the first ``message`` the page sends
    loses its request (``what="request"``) or its echo (``"echo"``, ``"echo-open"``), and the
    socket closes right after unless ``what`` is ``"echo-open"``."""
    state = {"dropped": None}

    def handler(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(text):
            frame = json.loads(text)
            if frame.get("type") == "message" and state["dropped"] is None:
                state["dropped"] = frame["client_id"]
                if what == "request":
                    ws.close(code=4000, reason="network trouble")
                    return
            server.send(text)

        def from_server(text):
            frame = json.loads(text)
            dropped = state["dropped"]
            if what != "request" and dropped and frame.get("client_id") == dropped:
                state["dropped"] = "done"
                if what == "echo":
                    ws.close(code=4000, reason="network trouble")
                return
            ws.send(text)

        ws.on_message(from_page)
        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/rooms/"), handler)
    return state


@pytest.mark.parametrize("what", ["request", "echo", "echo-open"])
def test_a_send_whose_request_or_echo_is_lost_is_shown_and_stored_exactly_once(
    server, open_as, what
):
    context, client = open_as(f"dora-{what}")
    path = room_create(client, f"Lossy {what}")
    page = context.new_page()
    state = route_dropping(page, what=what)
    page.goto(server.url + path)
    expect(page.locator("#status")).to_have_class(re.compile("status-open"))
    text = f"sent once through a lossy network ({what})"
    send(page, text)

    # Without its echo the message stays pending; then it is stored and shown once.
    expect(page.locator("#messages > li.pending .body")).to_have_text([text])
    expect(page.locator("#messages > li:not(.pending) .body")).to_have_text(
        [text], timeout=RECONNECT_MS
    )
    expect(page.locator("#messages > li.pending")).to_have_count(0)
    assert state["dropped"] not in (None, "")
    rows = stored(server, body=text)
    assert len(rows) == 1
    node = message(page, text)
    expect(node).to_have_attribute("data-client-id", rows[0]["client_id"])
    reload(page)
    assert bodies(page) == [text]


def test_an_unsent_message_survives_a_reload_and_is_sent_with_the_same_client_id(server, open_as):
    context, client = open_as("erin")
    path = room_create(client, "Room reload")
    page = context.new_page()
    held: list[WebSocketRoute] = []
    holding = [True]

    def hold(ws: WebSocketRoute) -> None:
        # While held, the socket opens but no server answers: nothing can be sent.
        if holding[0]:
            held.append(ws)
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/rooms/"), hold)
    page.goto(server.url + path)
    send(page, "typed before a reload")
    pending = page.locator("#messages > li.pending")
    expect(pending.locator(".body")).to_have_text("typed before a reload")
    client_id = pending.get_attribute("data-client-id")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", client_id)

    page.reload()
    expect(pending.locator(".body")).to_have_text("typed before a reload")
    assert pending.get_attribute("data-client-id") == client_id
    holding[0] = False
    held[-1].close(code=4000)  # the page reconnects, to the real server this time

    expect(page.locator("#messages > li:not(.pending) .body")).to_have_text(
        ["typed before a reload"], timeout=RECONNECT_MS
    )
    assert stored(server, body="typed before a reload") == [
        {"body": "typed before a reload", "client_id": client_id, "deleted": False}
    ]


def test_a_server_killed_right_after_a_send_shows_the_message_once_after_restart(server, open_as):
    context, client = open_as("fiona")
    page = room_page(context, server, room_create(client, "Room sigkill"))
    other = room_page(context, server, page.url.removeprefix(server.url))
    send(page, "before the crash")
    expect(message(page, "before the crash")).to_have_count(1)

    send(page, "sent as the server died")
    server.process.kill()
    server.process.wait()
    server.process = None
    expect(page.locator("#status")).to_have_class(re.compile("status-offline"))
    server.start()

    for tab in (page, other):
        expect(tab.locator("#messages > li:not(.pending) .body")).to_have_text(
            ["before the crash", "sent as the server died"], timeout=RECONNECT_MS
        )
        expect(tab.locator("#messages > li.pending")).to_have_count(0)
    assert len(stored(server, body="sent as the server died")) == 1
    reload(page)
    assert bodies(page) == ["before the crash", "sent as the server died"]


def post_form(client, path: str, data: dict[str, str]) -> None:
    """Submit a form of ``path`` as the browser would (with its CSRF token)."""
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    headers = {"Referer": str(client.base_url) + path}
    response = client.post(path, data={"csrfmiddlewaretoken": token, **data}, headers=headers)
    assert response.status_code == 302, response.text[:500]


def test_a_member_removed_from_a_private_room_sees_why_and_the_page_stops(server, open_as):
    _, owner = open_as("hana")
    context, _ = open_as("ivan")
    post_form(owner, "/rooms/", {"name": "Secret plans", "private": "on"})
    rooms = owner.get("/rooms/").text
    path = re.search(r'href="(/rooms/secret-plans-[0-9a-f]+/)"', rooms).group(1)
    post_form(owner, path + "members/", {"username": "ivan"})
    page = room_page(context, server, path)

    reconnects = []
    page.on("websocket", lambda ws: reconnects.append(ws.url))
    post_form(owner, path + "members/", {"remove": "ivan"})
    status = page.locator("#status")
    expect(status).to_have_text("You are no longer a member of this room")
    expect(status).to_have_class(re.compile("status-closed"))
    page.wait_for_timeout(1500)  # longer than the first reconnect delay: none is made
    assert reconnects == []
    assert page.evaluate("document.body.dataset.chatState") == "closed"
