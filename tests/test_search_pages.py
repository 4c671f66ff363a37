"""The /search/ page and the header's search box (SQLite, Django's test client)."""

import re

import pytest
from django.test import Client

from rooms import services

from .factories import room_make, user_create

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_search_page_requires_login():
    response = Client().get("/search/?q=hello")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_header_has_a_search_box_on_every_logged_in_page():
    alice = user_create("alice")
    page = client_for(alice).get("/rooms/").content.decode()
    assert re.search(r'<form class="site-search"[^>]*action="/search/"', page)
    assert 'name="q"' in page


def test_search_page_shows_room_author_time_and_escaped_highlighted_snippet():
    alice = user_create("alice")
    room = room_make("General", created_by=alice)
    message = services.message_create(
        room=room, author=alice, body="deployment done <script>alert(1)</script>"
    )
    page = client_for(alice).get("/search/", {"q": "deplo"}).content.decode()
    assert f'href="/rooms/general/?around={message.seq}"' in page
    assert '<span class="search-hit-room">General</span>' in page
    assert '<span class="search-hit-author">alice</span>' in page
    assert "<time datetime=" in page
    assert "<mark>deployment</mark> done &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_search_page_says_when_only_common_words_were_typed():
    alice = user_create("alice")
    page = client_for(alice).get("/search/", {"q": "the and of"}).content.decode()
    assert "Only common words" in page


def test_search_page_says_when_nothing_matches():
    alice = user_create("alice")
    page = client_for(alice).get("/search/", {"q": "zebra"}).content.decode()
    assert "No messages match “zebra”." in page


def test_search_page_for_an_unreadable_room_reads_like_an_unknown_one():
    alice, bob = user_create("alice"), user_create("bob")
    secret = services.room_create(name="Secret", created_by=alice, private=True)
    services.message_create(room=secret, author=alice, body="launch codes")
    client = client_for(bob)
    unreadable = client.get("/search/", {"q": "launch", "room": secret.slug})
    unknown = client.get("/search/", {"q": "launch", "room": "nope"})
    assert unreadable.status_code == unknown.status_code == 200

    def page(response) -> str:  # the CSRF token of the logout form differs per response
        return re.sub(r'value="[A-Za-z0-9]{64}"', "", response.content.decode())

    assert page(unreadable).replace(secret.slug, "nope") == page(unknown)
    assert "launch codes" not in unreadable.content.decode()


def test_search_page_links_to_the_next_page_and_keeps_the_room_filter():
    alice = user_create("alice")
    room = room_make("General", created_by=alice)
    for i in range(25):
        services.message_create(room=room, author=alice, body=f"standup {i}")
    client = client_for(alice)
    first = client.get("/search/", {"q": "standup", "room": "general"}).content.decode()
    assert 'href="?q=standup&amp;room=general&amp;page=2"' in first
    second = client.get("/search/", {"q": "standup", "room": "general", "page": "2"})
    assert second.content.decode().count('class="search-hit"') == 5
    assert client.get("/search/", {"q": "standup", "page": "x"}).status_code == 200
