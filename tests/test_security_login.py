"""Login and sign-up throttling (issue 13, finding 3), through real requests to the views."""

import logging
import uuid

import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.test import Client

from .factories import PASSWORD, user_create

LIMIT = settings.AXES_FAILURE_LIMIT


def login_post(username: str, password: str, address: str = "203.0.113.5", client=None):
    """POST the login form as a browser at ``address`` would."""
    client = client or Client(REMOTE_ADDR=address)
    return client, client.post("/login/", {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def a_new_address() -> str:
    """An address no other test used, so counters kept in the cache never collide."""
    return f"198.51.100.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"


@pytest.mark.django_db
def test_wrong_passwords_lock_the_account_even_against_the_right_password_from_elsewhere():
    user_create("alice")
    for i in range(LIMIT):
        _, response = login_post("alice", "guess", address=f"203.0.113.{i + 1}")
        assert response.status_code == 200 if i < LIMIT - 1 else 429
    client, response = login_post("alice", PASSWORD, address="192.0.2.77")
    assert response.status_code == 429
    assert not logged_in(client)
    page = response.content.decode()
    assert "Too many failed log-ins for this account or from your address" in page
    assert f"{round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)} minutes" in page


@pytest.mark.django_db
def test_failures_from_one_address_lock_that_address_out_for_every_username():
    user_create("bob")
    for i in range(LIMIT):
        login_post(f"nobody{i}", "guess", address="203.0.113.9")
    client, response = login_post("bob", PASSWORD, address="203.0.113.9")
    assert response.status_code == 429
    assert not logged_in(client)


@pytest.mark.django_db
def test_a_lockout_leaves_other_accounts_at_other_addresses_alone():
    user_create("alice")
    user_create("carol")
    for _ in range(LIMIT):
        login_post("alice", "guess", address="203.0.113.10")
    client, response = login_post("carol", PASSWORD, address="203.0.113.11")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_failures_below_the_limit_still_let_the_right_password_in():
    user_create("alice")
    for _ in range(LIMIT - 1):
        login_post("alice", "guess", address="203.0.113.12")
    client, response = login_post("alice", PASSWORD, address="203.0.113.12")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_failed_logins_are_counted_in_the_database_shared_by_every_worker():
    login_post("alice", "guess", address="203.0.113.13")
    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.ip_address == "203.0.113.13"
    assert attempt.failures_since_start == 1
    assert "guess" not in attempt.post_data


@pytest.mark.django_db
def test_a_failed_login_is_logged_with_username_and_address_but_never_the_password(caplog):
    user_create("alice")
    with caplog.at_level(logging.WARNING):
        login_post("alice", "s3cret-guess-\n-forged line", address="203.0.113.14")
    lines = [r for r in caplog.records if r.name == "chatapp.security"]
    assert len(lines) == 1
    assert lines[0].getMessage() == "login failed: username='alice' address=203.0.113.14"
    assert "s3cret-guess" not in caplog.text


@pytest.mark.django_db
def test_a_forged_username_cannot_add_a_line_to_the_log(caplog):
    with caplog.at_level(logging.WARNING):
        login_post("mallory\nlogin ok: username='admin'", "x", address="203.0.113.15")
    (record,) = [r for r in caplog.records if r.name == "chatapp.security"]
    assert "\n" not in record.getMessage()


@pytest.mark.django_db
def test_code_that_logs_in_without_a_request_is_not_throttled():
    """The test client's login() has no request: not a form anyone can reach."""
    user_create("alice")
    assert Client().login(username="alice", password=PASSWORD)


@pytest.mark.django_db
def test_signups_from_one_address_are_refused_past_the_hourly_limit(settings):
    settings.SIGNUP_LIMIT_PER_HOUR = 3
    address = a_new_address()
    for i in range(3):
        response = Client(REMOTE_ADDR=address).post(
            "/signup/", {"username": f"new{i}", "password1": PASSWORD, "password2": PASSWORD}
        )
        assert response.status_code == 302
    response = Client(REMOTE_ADDR=address).post(
        "/signup/", {"username": "new3", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 429
    assert "Too many sign-ups from your address" in response.content.decode()
    assert not get_user_model().objects.filter(username="new3").exists()
    other = Client(REMOTE_ADDR=a_new_address()).post(
        "/signup/", {"username": "new4", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert other.status_code == 302


@pytest.mark.django_db
def test_refused_signups_count_too(settings):
    """Every attempt counts, so the form cannot be used to probe usernames without limit."""
    settings.SIGNUP_LIMIT_PER_HOUR = 2
    address = a_new_address()
    for _ in range(2):
        Client(REMOTE_ADDR=address).post(
            "/signup/", {"username": "x", "password1": "a", "password2": "b"}
        )
    response = Client(REMOTE_ADDR=address).post(
        "/signup/", {"username": "fresh", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 429


@pytest.mark.django_db
def test_successful_logins_leave_no_rows_behind():
    user_create("alice")
    client, response = login_post("alice", PASSWORD)
    assert response.status_code == 302
    client.post("/logout/")
    assert not AccessLog.objects.exists()
    assert not AccessAttempt.objects.exists()


@pytest.mark.django_db
def test_the_admin_login_is_throttled_by_the_same_counter():
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    client = Client(REMOTE_ADDR="203.0.113.16")
    for _ in range(LIMIT):
        client.post("/admin/login/", {"username": "root", "password": "guess"})
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302
