"""Login and sign-up throttling against the real server (uvicorn), addresses from the proxy."""

import re

import httpx
import pytest

from .support.server import PASSWORD, live_server, signup

pytestmark = pytest.mark.server

LIMIT = 3
SIGNUPS = 3


@pytest.fixture(scope="module")
def server():
    """uvicorn on its defaults: 127.0.0.1 (where nginx would be) is the trusted proxy."""
    with live_server(LOGIN_FAILURE_LIMIT=str(LIMIT), SIGNUP_LIMIT_PER_HOUR=str(SIGNUPS)) as running:
        signup(running.url, "alice")
        yield running


@pytest.fixture(scope="module")
def untrusting_server():
    """uvicorn that trusts no proxy at this address: X-Forwarded-For is ignored."""
    with live_server(LOGIN_FAILURE_LIMIT=str(LIMIT), FORWARDED_ALLOW_IPS="192.0.2.1") as running:
        yield running


def form_post(base_url: str, path: str, data: dict, forwarded_for: str | None = None):
    """GET the form for its CSRF token, then POST it, as a browser behind the proxy would."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with httpx.Client(base_url=base_url, timeout=20, headers=headers) as client:
        page = client.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        data = {"csrfmiddlewaretoken": token, **data}
        return client.post(path, data=data, headers={"Referer": base_url + path})


def login_post(base_url: str, username: str, password: str, forwarded_for: str | None = None):
    data = {"username": username, "password": password}
    return form_post(base_url, "/login/", data, forwarded_for)


def test_an_account_is_locked_after_the_limit_from_any_address_and_the_page_says_so(server):
    for i in range(LIMIT):
        login_post(server.url, "alice", "guess", forwarded_for=f"203.0.113.{i + 1}")
    response = login_post(server.url, "alice", PASSWORD, forwarded_for="203.0.113.200")
    assert response.status_code == 429
    assert "Too many failed log-ins for this account or from your address" in response.text
    assert "sessionid" not in response.cookies
    log = server.log()
    assert "login failed: username='alice' address=203.0.113.1" in log
    assert "guess" not in log and PASSWORD not in log


def test_an_address_is_locked_for_every_account_and_others_are_not(server):
    signup(server.url, "bob")
    for i in range(LIMIT):
        login_post(server.url, f"nobody{i}", "guess", forwarded_for="198.51.100.7")
    locked = login_post(server.url, "bob", PASSWORD, forwarded_for="198.51.100.7")
    assert locked.status_code == 429
    elsewhere = login_post(server.url, "bob", PASSWORD, forwarded_for="198.51.100.8")
    assert elsewhere.status_code == 302


def test_signups_past_the_hourly_limit_of_an_address_are_refused(server):
    def signup_post(username: str, address: str):
        data = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
        return form_post(server.url, "/signup/", data, forwarded_for=address)

    for i in range(SIGNUPS):
        assert signup_post(f"carol{i}", "192.0.2.50").status_code == 302
    refused = signup_post("erin", "192.0.2.50")
    assert refused.status_code == 429
    assert "Too many sign-ups from your address" in refused.text
    assert signup_post("erin", "192.0.2.51").status_code == 302


def test_a_client_cannot_escape_the_address_lockout_by_forging_x_forwarded_for(
    untrusting_server,
):
    for i in range(LIMIT):
        login_post(untrusting_server.url, f"user{i}", "guess", forwarded_for=f"203.0.113.{i}")
    response = login_post(untrusting_server.url, "user9", "guess", forwarded_for="203.0.113.99")
    assert response.status_code == 429
    assert "address=127.0.0.1" in untrusting_server.log()
    assert "address=203.0.113" not in untrusting_server.log()


def test_the_real_server_marks_private_pages_no_store_and_sends_the_policy(server):
    """Under uvicorn the middleware chain runs async: the same headers as in-process."""
    client = signup(server.url, "frank")
    page = client.get("/rooms/")
    client.close()
    assert page.status_code == 200
    assert "no-store" in page.headers["cache-control"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "camera=()" in page.headers["permissions-policy"]
    anonymous = httpx.get(server.url + "/", timeout=20)
    assert "no-store" not in anonymous.headers.get("cache-control", "")
