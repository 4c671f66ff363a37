"""Pages: front page, accounts, the room list and its form, and a room's history."""

import pytest
from django.urls import reverse

from rooms.models import Room

from .factories import PASSWORD, messages_make, room_make, user_create

pytestmark = pytest.mark.django_db


def test_front_page_links_to_signup_and_login(client):
    page = client.get("/").content.decode()
    assert 'href="/signup/"' in page
    assert 'href="/login/"' in page


def test_signup_creates_the_user_logs_in_and_goes_to_the_rooms(client):
    response = client.post(
        "/signup/", {"username": "carol", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/rooms/"
    assert client.get("/rooms/").wsgi_request.user.username == "carol"


def test_signup_with_mismatched_passwords_shows_the_error(client):
    response = client.post(
        "/signup/", {"username": "carol", "password1": PASSWORD, "password2": "x"}
    )
    assert response.status_code == 200
    assert "password fields didn" in response.content.decode()


def test_login_and_logout_by_post(client):
    user_create("dave")
    response = client.post("/login/", {"username": "dave", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/rooms/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/rooms/").status_code == 302


def test_rooms_require_login(client, room):
    for url in ("/rooms/", f"/rooms/{room.slug}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_room_list_shows_newest_activity_first(client, alice):
    room_make("Quiet")
    busy = room_make("Busy")
    messages_make(busy, alice, 1)
    client.force_login(alice)
    page = client.get("/rooms/").content.decode()
    assert page.index("/rooms/busy/") < page.index("/rooms/quiet/")
    assert 'action="."' in page


def test_room_form_posts_back_and_opens_the_new_room(client, alice):
    client.force_login(alice)
    response = client.post("/rooms/", {"name": "Design Review"})
    room = Room.objects.get(name="Design Review")
    assert response.status_code == 302
    assert response["Location"] == reverse("rooms:detail", kwargs={"slug": room.slug})
    assert room.slug == "design-review"
    assert room.created_by == alice


@pytest.mark.parametrize("name", ["", "   ", "general", "GENERAL"])
def test_empty_or_duplicate_room_name_is_a_form_error(client, alice, room, name):
    client.force_login(alice)
    response = client.post("/rooms/", {"name": name})
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert Room.objects.count() == 1


def test_room_page_renders_the_latest_fifty_messages_in_order(client, alice, room):
    messages_make(room, alice, 60)
    client.force_login(alice)
    page = client.get(f"/rooms/{room.slug}/").content.decode()
    assert 'data-seq="10"' not in page
    assert 'data-seq="11"' in page
    assert page.index('data-seq="11"') < page.index('data-seq="60"')
    assert '"lastSeq": 60' in page


def test_message_text_is_escaped_on_the_page(client, alice, room):
    from rooms.services import message_create

    message_create(room=room, author=alice, body="<script>alert(1)</script>")
    client.force_login(alice)
    page = client.get(f"/rooms/{room.slug}/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_unknown_room_is_404(client, alice):
    client.force_login(alice)
    assert client.get("/rooms/nowhere/").status_code == 404


def test_admin_manages_users_rooms_and_messages(admin_client, room):
    for url in ("/admin/auth/user/", "/admin/rooms/room/", "/admin/rooms/message/"):
        assert admin_client.get(url).status_code == 200
