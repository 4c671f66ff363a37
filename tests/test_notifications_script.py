"""scripts/notify.py, run as a separate program against the test database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from notifications.models import Delivery, Notification

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.django_db(transaction=True)]


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    # The script's own settings, pointed at this test's (committed) SQLite database.
    env.update(
        DJANGO_SETTINGS_MODULE="chatproject.settings",
        SECRET_KEY="script-test-secret",
        SQLITE_PATH=str(connection.settings_dict["NAME"]),
    )
    return env


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "notify.py"), *args],
        cwd="/",  # the script finds the project itself
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_script_notifies_everyone(alice, bob):
    done = run_script("Deploy finished", "--level", "success", "--link", "/rooms/")
    assert done.returncode == 0, done.stderr
    notification = Notification.objects.get()
    assert done.stdout.strip() == f"Notification #{notification.pk} sent to 2 users."
    assert (notification.text, notification.level, notification.link) == (
        "Deploy finished",
        "success",
        "/rooms/",
    )
    assert Delivery.objects.filter(notification=notification, read_at=None).count() == 2


def test_the_script_notifies_chosen_users(alice, bob):
    done = run_script("Just Bob", "--user", "bob")
    assert done.returncode == 0, done.stderr
    assert list(Delivery.objects.values_list("user__username", flat=True)) == ["bob"]


def test_the_script_fails_clearly_on_an_unknown_user_or_bad_link(alice):
    done = run_script("Hi", "--user", "ghost")
    assert done.returncode == 2
    assert "unknown or inactive user(s): ghost" in done.stderr
    done = run_script("Hi", "--link", "javascript:alert(1)")
    assert done.returncode == 2
    assert "relative" in done.stderr
    assert not Notification.objects.exists()


def test_the_command_exits_non_zero_with_a_clear_error_on_an_unknown_user(alice):
    done = subprocess.run(
        [sys.executable, "manage.py", "notifications", "Hi", "--users", "alice", "ghost"],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "CommandError: Unknown or inactive user(s): ghost." in done.stderr
    assert not Notification.objects.exists()


def test_the_command_run_as_a_program_reports_its_reach(alice, bob):
    done = subprocess.run(
        [sys.executable, "manage.py", "notifications", "Hello", "--users", "bob"],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "sent to 1 user." in done.stdout
    assert "in-memory" in done.stderr  # warns that live delivery needs REDIS_URL
