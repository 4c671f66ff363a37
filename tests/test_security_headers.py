"""Content-Security-Policy, Permissions-Policy and Cache-Control (issue 13, finding 7)."""

import re
from pathlib import Path

import pytest
from django.test import Client

from .factories import room_make

ROOT = Path(__file__).resolve().parents[1]


def directives(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header, parsed into its directives."""
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/login/", "/signup/"])
def test_every_page_has_a_strict_content_security_policy(client, path):
    csp = directives(client.get(path))
    assert csp["default-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    # Nothing loosens script or style below default-src 'self'.
    assert "script-src" not in csp and "style-src" not in csp
    header = client.get(path)["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header


@pytest.mark.django_db
def test_every_page_denies_powerful_features_by_permissions_policy(client):
    policy = client.get("/")["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in policy


@pytest.mark.django_db
def test_every_page_of_a_logged_in_user_is_not_stored(alice_client, alice):
    room = room_make("Secret plans", created_by=alice)
    paths = ["/", "/rooms/", f"/rooms/{room.slug}/", f"/rooms/{room.slug}/members/"]
    paths += ["/notifications/", "/password/"]
    for path in paths:
        response = alice_client.get(path)
        assert response.status_code == 200, path
        cache_control = response["Cache-Control"]
        assert "no-store" in cache_control and "private" in cache_control, path


@pytest.mark.django_db
def test_public_pages_and_static_files_stay_cacheable(client):
    assert "no-store" not in client.get("/").get("Cache-Control", "")
    static = client.get("/static/chatapp/site.css")
    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")


def test_no_template_has_inline_script_or_style():
    """The policy forbids inline script and style: page config goes through json_script."""
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>")
    offenders = []
    for template in ROOT.glob("*/templates/**/*.html"):
        text = template.read_text()
        if inline_script.search(text) or re.search(r"\sstyle=|<style", text):
            offenders.append(str(template.relative_to(ROOT)))
    assert not offenders
