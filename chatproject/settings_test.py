"""Settings for the test run: production settings with a throwaway key and no outer services."""

import os

# Tests run with production settings (DEBUG off), so they need a key; never a real one.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# The tests start their own Redis and PostgreSQL; an outer REDIS_URL or DATABASE_URL in the
# developer's shell must not leak into the in-process tests.
os.environ.pop("REDIS_URL", None)
os.environ.pop("DATABASE_URL", None)

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file, not SQLite's shared in-memory database: concurrent writers then wait on the busy
# timeout as in production, instead of failing with "database table is locked".
DATABASES["default"].setdefault("TEST", {})["NAME"] = f"/tmp/chatproject-test-{os.getpid()}.sqlite3"  # noqa: F405

# Many tests sign up users from the one test-client address; the sign-up throttle has its own
# tests (tests/test_security_login.py) that set a small limit.
SIGNUP_LIMIT_PER_HOUR = 10_000
