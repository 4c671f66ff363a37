"""The password change page, and `check --deploy` on the documented production settings."""

import os
import secrets
import subprocess
import sys

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from .factories import PASSWORD
from .support.server import ROOT

NEW_PASSWORD = "a-brand-new-long-passphrase"


def logged_in(client: Client) -> bool:
    return client.get("/rooms/").status_code == 200


@pytest.mark.django_db
def test_the_password_page_needs_a_login(client):
    response = client.get("/password/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/password/")


@pytest.mark.django_db
def test_the_header_links_to_the_password_page(alice):
    client = Client()
    client.force_login(alice)
    assert 'href="/password/"' in client.get("/rooms/").content.decode()


@pytest.mark.django_db
def test_changing_the_password_keeps_this_session_and_ends_the_others(alice):
    here, elsewhere = Client(), Client()
    here.force_login(alice)
    elsewhere.force_login(alice)
    response = here.post(
        "/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/password/done/"
    assert "Your password was changed" in here.get("/password/done/").content.decode()
    assert logged_in(here)
    assert not logged_in(elsewhere)
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


@pytest.mark.django_db
def test_a_wrong_old_password_changes_nothing(alice):
    client = Client()
    client.force_login(alice)
    response = client.post(
        "/password/",
        {"old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert SESSION_KEY in client.session


# The production settings README.md documents (section "Production").
PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "BEHIND_TLS_PROXY": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    """``manage.py check --deploy --fail-level WARNING`` in a process of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    for name in ("DEBUG", "REDIS_URL", "DATABASE_URL", *PRODUCTION_ENV):
        base.pop(name, None)
    base.update(DJANGO_SETTINGS_MODULE="chatproject.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_clean_with_the_documented_production_settings():
    result = deploy_check(**PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_the_tls_settings():
    """The same check can fail: without the proxy settings it names what is missing."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "BEHIND_TLS_PROXY"}
    result = deploy_check(**env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr  # no HSTS
    assert "security.W012" in result.stderr  # session cookie not secure
