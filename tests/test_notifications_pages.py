"""The bell, the notifications page, marking read over HTTP, and sending from the admin."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from notifications.models import Delivery, Notification
from notifications.selectors import unread_count
from notifications.services import notify

from .factories import PASSWORD, user_create

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff(db):
    user = user_create("boss")
    user.is_staff = True
    user.is_superuser = True
    user.save()
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_header_bell_shows_the_unread_count_on_every_page(alice, room):
    notify(text="one", users=[alice])
    notify(text="two", users=[alice])
    client = client_for(alice)
    for url in ("/", "/rooms/", f"/rooms/{room.slug}/", "/notifications/"):
        html = client.get(url).content.decode()
        assert 'id="notifications-count" class="bell-count" data-unread="2">2<' in html, url
        assert "notifications/notifications.js" in html


def test_anonymous_pages_have_no_bell():
    html = Client().get("/").content.decode()
    assert "notifications-bell" not in html


def test_the_notifications_page_lists_newest_first_with_text_escaped(alice, bob):
    notify(text="<script>alert('x')</script> first", link="/rooms/")
    notify(text="second & last", users=[alice])
    notify(text="not for alice", users=[bob])
    html = client_for(alice).get("/notifications/").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; first" in html
    assert html.index("second &amp; last") < html.index("first")
    assert "not for alice" not in html
    assert '<a class="text" href="/rooms/">' in html


def test_the_notifications_page_needs_a_login():
    response = Client().get("/notifications/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_mark_one_read_then_all_read(alice):
    first = notify(text="one", users=[alice]).notification
    notify(text="two", users=[alice])
    client = client_for(alice)
    assert client.get(f"/notifications/{first.pk}/read/").status_code == 405
    response = client.post(f"/notifications/{first.pk}/read/")
    assert response.status_code == 302
    assert unread_count(user=alice) == 1
    assert Delivery.objects.get(user=alice, notification=first).read_at is not None
    client.post("/notifications/read/", {"next": "/rooms/"})
    assert unread_count(user=alice) == 0
    assert json.loads(client.get("/notifications/unread/").content) == {"unread": 0}


def test_marking_someone_elses_notification_changes_nothing(alice, bob):
    theirs = notify(text="bob only", users=[bob]).notification
    client_for(alice).post(f"/notifications/{theirs.pk}/read/")
    assert unread_count(user=bob) == 1


def test_mark_read_does_not_redirect_off_site(alice):
    notify(text="one", users=[alice])
    response = client_for(alice).post("/notifications/read/", {"next": "https://evil.example/"})
    assert response["Location"] == "/notifications/"


@pytest.mark.asyncio
async def test_marking_read_over_http_updates_every_open_tab(connect, alice, room):
    await database_sync_to_async(notify)(text="one", users=[alice])
    tab1 = await connect("/ws/notifications/", alice)
    tab2 = await connect(f"/ws/rooms/{room.slug}/", alice)
    assert json.loads(await tab1.receive_from(timeout=3))["unread"] == 1

    await database_sync_to_async(lambda: client_for(alice).post("/notifications/read/"))()
    for tab in (tab1, tab2):
        frame = json.loads(await tab.receive_from(timeout=3))
        assert frame == {"type": "notification.read", "ids": None, "unread": 0}


def admin_send(client: Client, **fields) -> object:
    data = {"text": "", "level": "info", "link": "", "audience": "everyone", "usernames": ""}
    data.update(fields)
    return client.post("/admin/notifications/notification/add/", data)


def test_staff_send_to_everyone_from_the_admin(staff, alice, bob):
    response = admin_send(client_for(staff), text="Hello all", level="success")
    assert response.status_code == 302, response.content.decode()[:2000]
    notification = Notification.objects.get()
    assert (notification.text, notification.level, notification.audience) == (
        "Hello all",
        "success",
        "everyone",
    )
    assert notification.sender == staff
    assert notification.recipients == 3
    assert response["Location"] == "/admin/notifications/notification/"


def test_staff_send_to_chosen_users_and_a_room_from_the_admin(staff, alice, bob, room):
    client = client_for(staff)
    admin_send(client, text="Two of you", audience="users", usernames="alice, bob")
    admin_send(client, text="Room folk", audience="room", target_room=room.pk)
    by_text = {n.text: n for n in Notification.objects.all()}
    assert set(by_text["Two of you"].deliveries.values_list("user__username", flat=True)) == {
        "alice",
        "bob",
    }
    assert list(by_text["Room folk"].deliveries.values_list("user__username", flat=True)) == [
        "alice"
    ]


def test_the_admin_refuses_unknown_users_and_bad_links(staff, alice):
    client = client_for(staff)
    response = admin_send(client, text="x", audience="users", usernames="alice ghost")
    assert response.status_code == 200
    assert "Unknown or inactive user(s): ghost." in response.content.decode()
    response = admin_send(client, text="x", link="javascript:alert(1)")
    assert response.status_code == 200
    assert "must be relative" in response.content.decode()
    assert not Notification.objects.exists()


def test_the_admin_add_page_renders_and_a_sent_notification_is_read_only(staff):
    client = client_for(staff)
    assert client.get("/admin/notifications/notification/add/").status_code == 200
    sent = notify(text="history").notification
    page = client.get(f"/admin/notifications/notification/{sent.pk}/change/")
    assert page.status_code == 200
    assert 'name="text"' not in page.content.decode()


def test_non_staff_cannot_reach_the_admin(alice):
    client = Client()
    client.login(username="alice", password=PASSWORD)
    response = admin_send(client, text="sneaky")
    assert response.status_code == 302
    assert not Notification.objects.exists()
