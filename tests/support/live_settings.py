"""Production settings with ``tests.support.live_urls`` (Django's password change view)."""

from chatproject.settings import *  # noqa: F403

ROOT_URLCONF = "tests.support.live_urls"
