"""Settings for chatproject, switched by environment variables with safe local defaults.

See the configuration table in README.md for every variable.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (production). "
            "For local development set DEBUG=1 (`make run` does)."
        )
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # Daphne's app gives ``manage.py runserver`` (``make run``) its ASGI server. Importing it
    # installs Twisted's reactor, a fifth of a process's start, for nothing when an ASGI server
    # (uvicorn) loads chatproject/asgi.py, which then loads these settings: a restart is that
    # much shorter (S5, docs/performance.md).
    *(["daphne"] if "chatproject.asgi" not in sys.modules else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "csp",
    "realtime",
    "chatapp",
    "rooms",
    "ops",
    "notifications",
    "search",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before SessionMiddleware: tells the user's sockets to re-check once the session is saved.
    "realtime.sessions.SocketSessionMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Security headers (docs/security.md): Content-Security-Policy, Permissions-Policy, and
    # Cache-Control: no-store on every response to a logged-in user.
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "chatapp.middleware.private_pages_not_stored",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "chatproject.wsgi.application"
ASGI_APPLICATION = "chatproject.asgi.application"

# Database: SQLite by default; DATABASE_URL (postgres://...) switches to PostgreSQL (psycopg 3).
# Consumers reach the ORM through database_sync_to_async, which closes connections older than
# CONN_MAX_AGE around every call: with 0, every chat message would open a new connection.
# All ORM work of a process runs on one thread (thread_sensitive), so a process holds one.
CONN_MAX_AGE = int(os.environ.get("CONN_MAX_AGE", "600"))
# PostgreSQL: the statements run on every connect and every message are prepared once per
# connection (chatapp.prepared.statement_cursor); nothing else is (psycopg prepares a statement
# only when asked, or above this many uses). DB_PREPARED=0 (None: never) behind a pooler that
# cannot keep prepared statements (PgBouncer's transaction mode before 1.21).
DB_PREPARE_THRESHOLD = 2**31 - 1 if os.environ.get("DB_PREPARED", "1") != "0" else None
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every HTTP request runs on a thread of its own, so persistent connections
        # (CONN_MAX_AGE) would be opened per request thread and linger until garbage
        # collection. A psycopg pool per process instead: each request or consumer call
        # borrows a connection and gives it back, so a process holds between DB_POOL_MIN and
        # DB_POOL_MAX connections whatever its socket count (see docs/scaling.md).
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": int(os.environ.get("DB_POOL_MIN", "1")),
            "max_size": int(os.environ.get("DB_POOL_MAX", "16")),
            "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "20")),
        }
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = DB_PREPARE_THRESHOLD
    else:
        DATABASES["default"].update(CONN_MAX_AGE=CONN_MAX_AGE, CONN_HEALTH_CHECKS=True)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "OPTIONS": {
                # WAL lets readers run beside the writer; the busy timeout makes concurrent
                # writers (several workers) wait for the lock instead of failing.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

# Django's database sessions, with the load every socket connect makes compiled once
# (chatapp/sessions); with REDIS_URL, read from the Redis cache first (below).
SESSION_ENGINE = "chatapp.sessions.db"

# Channel layer: in-memory by default (one process only); REDIS_URL (redis://, rediss:// or
# unix://) switches to channels_redis, and the same Redis backs the cache. See docs/scaling.md
# for the choice of layer and the numbers behind these values.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            "REDIS_URL must start with redis://, rediss:// (TLS) or unix:// (a socket path), "
            f"not {REDIS_URL.split(':', 1)[0]!r}."
        )
    REDIS_CONNECTION = {
        # redis-py 8 defaults to a 5 s socket_timeout, the same as channels_redis' blocking
        # read (BZPOPMIN, 5 s): in a quiet room the read timed out and the reader died
        # (django/channels_redis#422). A longer one still notices a dead server.
        "socket_timeout": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "15")),
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        # Per process and event loop; realtime.layers makes callers wait for a free connection
        # instead of failing with MaxConnectionsError when all are busy.
        "max_connections": int(os.environ.get("REDIS_MAX_CONNECTIONS", "100")),
    }
    if not REDIS_URL.startswith("unix://"):
        REDIS_CONNECTION["socket_keepalive"] = True
    # Connections from a pool that channels_redis builds get no retry at all, so the first
    # command on a connection that a Redis restart left stale failed, and that event was lost
    # to live delivery. Retry on a fresh connection, briefly.
    from redis.asyncio.retry import Retry as RedisRetry
    from redis.backoff import ExponentialWithJitterBackoff

    REDIS_CONNECTION["retry"] = RedisRetry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)
    REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "chat")
    # core (default): a queue per worker process in Redis; events wait there through a
    # connection blip, and only a Redis restart loses them, which the hubs always notice.
    # pubsub: one PUBLISH per event, much cheaper, but a subscriber that reconnects misses
    # what was published meanwhile. docs/scaling.md has the measurements behind the choice.
    REDIS_CHANNEL_LAYER = os.environ.get("REDIS_CHANNEL_LAYER", "core")
    if REDIS_CHANNEL_LAYER == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": REDIS_URL, **REDIS_CONNECTION}],
                    "prefix": REDIS_PREFIX,
                },
            }
        }
    elif REDIS_CHANNEL_LAYER == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "realtime.layers.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": REDIS_URL, **REDIS_CONNECTION}],
                    # Members are worker processes (realtime.hub), so one queue carries every
                    # room of a process: a large capacity keeps bursts from being dropped.
                    "capacity": 10_000,
                    "expiry": 60,
                    # Each hub renews its memberships every 15 s; a killed process drops out
                    # of its groups after this many seconds instead of a day.
                    "group_expiry": 90,
                    "prefix": REDIS_PREFIX,
                },
            }
        }
    else:
        raise ImproperlyConfigured(
            f"REDIS_CHANNEL_LAYER must be pubsub or core, not {REDIS_CHANNEL_LAYER!r}."
        )
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": {"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
        }
    }
    # Sessions read from Redis, written to both (Django's cached_db, chatapp.sessions): every
    # socket's handshake and session re-check reads its session, so a reconnect storm after a
    # restart is not a database storm (docs/performance.md, S5). Logging out deletes both copies.
    if env_bool("SESSION_CACHE", True):
        SESSION_ENGINE = "chatapp.sessions.cached_db"
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.InMemoryChannelLayer",
            # Each process subscribes once per group through realtime.hub, so one queue per
            # process carries every room; a large capacity keeps bursts from being dropped.
            "CONFIG": {"capacity": 100_000, "expiry": 60},
        }
    }

# Behind a proxy that terminates TLS (deploy/nginx.conf with ssl): trust its
# X-Forwarded-Proto, and send cookies over HTTPS only. Only set this behind such a proxy,
# which must overwrite the header: otherwise a client could claim to use HTTPS.
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
    # Opt-ins, as browsers remember them for SECURE_HSTS_SECONDS: every subdomain HTTPS-only,
    # and consent to the browsers' preload list. `check --deploy` asks for both.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    # /healthz and /readyz are probed over plain HTTP by load balancers.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# Off by default: adds X-Served-By: <host>:<pid> to WebSocket handshakes, so an operator (or
# the cluster test) can see which worker process holds a socket.
CHAT_SERVED_BY_HEADER = env_bool("CHAT_SERVED_BY_HEADER", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out login before the password is even checked.
    "chatapp.security.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Login throttling (django-axes, failures stored in the database so every worker and node
# shares them). A username with LOGIN_FAILURE_LIMIT failures, or an address with as many, is
# locked out for LOGIN_COOLOFF_MINUTES; failures older than that are forgotten. The client
# address is REMOTE_ADDR, which uvicorn already takes from X-Forwarded-For when (and only
# when) the connection comes from --forwarded-allow-ips (see docs/security.md).
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "chatapp.security.client_address"
AXES_LOCKOUT_CALLABLE = "chatapp.security.lockout_response"
# A successful login must not wipe the address's failures: an attacker holding one account
# could otherwise reset the counter between guesses at others.
AXES_RESET_ON_SUCCESS = False
# Axes would otherwise store a row for every successful login and logout, forever; failures
# are kept (until the cool-off) and logged by chatapp.security.
AXES_DISABLE_ACCESS_LOG = True
# Sign-ups per client address per hour (every POST to /signup/ counts), in the default cache.
SIGNUP_LIMIT_PER_HOUR = int(os.environ.get("SIGNUP_LIMIT_PER_HOUR", "20"))

# Content-Security-Policy (django-csp): only this origin's scripts, styles, images, fonts and
# connections; no inline script or style, no plugins, no framing. 'self' in connect-src covers
# ws:/wss: to the same host (CSP Level 3, verified in Chromium by tests/test_security_browser.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy: the chat uses none of these powerful features, so no page (or anything
# injected into one) may ask for them.
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
    )
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "rooms:list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Serve app static files straight from the finders as well, so a server works before (or
# without) collectstatic; collected files are still preferred when present.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Chat limits (see docs/protocol.md).
CHAT_MESSAGE_MAX_LENGTH = int(os.environ.get("CHAT_MESSAGE_MAX_LENGTH", "4000"))
CHAT_HISTORY_PAGE = 50
CHAT_SYNC_LIMIT = int(os.environ.get("CHAT_SYNC_LIMIT", "500"))
# Per user, across all of a user's sockets, workers and nodes: a token bucket (per second,
# burst) per budget; realtime.limits.FRAME_LIMITS says which frame type spends which budget.
# `message`, `edit`, `delete` and `react` share one; `sync` (and the catch-up of `?after=`)
# costs one token per frame it answers with, so asking again and again cannot multiply work.
CHAT_RATE_PER_SECOND = float(os.environ.get("CHAT_RATE_PER_SECOND", "10"))
CHAT_RATE_BURST = float(os.environ.get("CHAT_RATE_BURST", "30"))
CHAT_SYNC_FRAMES_PER_SECOND = float(os.environ.get("CHAT_SYNC_FRAMES_PER_SECOND", "1000"))
CHAT_SYNC_FRAMES_BURST = float(os.environ.get("CHAT_SYNC_FRAMES_BURST", "2000"))
# A socket whose frames were refused this many times in a row (a flood that goes on) is
# closed with 4429.
CHAT_RATE_CLOSE_AFTER = int(os.environ.get("CHAT_RATE_CLOSE_AFTER", "20"))
# Open sockets per user (room and notification sockets, all workers and nodes); the one past
# it is closed with 4429.
CHAT_SOCKETS_PER_USER = int(os.environ.get("CHAT_SOCKETS_PER_USER", "50"))
# Largest client frame in bytes; a larger one closes the socket with 1009 unparsed. Give the
# server the same bound (uvicorn --ws-max-size, nginx: see README.md) so it never reads more.
CHAT_FRAME_MAX_BYTES = int(os.environ.get("CHAT_FRAME_MAX_BYTES", str(64 * 1024)))
# Frames waiting for one slow socket; past this the socket is closed (4008) and resyncs.
CHAT_OUTBOX_LIMIT = int(os.environ.get("CHAT_OUTBOX_LIMIT", "1000"))
# Threads per process that store changes (messages, edits, reactions) at once, on PostgreSQL
# only (realtime.db); each keeps a pooled connection between changes, so at most DB_POOL_MAX - 1
# run (16: the writers, the default database thread and HTTP requests share the pool).
CHAT_DB_WRITERS = int(os.environ.get("CHAT_DB_WRITERS", "8"))

# Presence and typing (docs/protocol.md, "Presence and typing"). On Redis each worker renews its
# users' entries every REFRESH seconds and they expire EXPIRY seconds after the last renewal, so
# the users of a killed worker show offline within EXPIRY + 1 s (the tick): 61 s by default.
CHAT_PRESENCE_REFRESH = float(os.environ.get("CHAT_PRESENCE_REFRESH", "20"))
CHAT_PRESENCE_EXPIRY = float(os.environ.get("CHAT_PRESENCE_EXPIRY", "60"))
if not 0 < CHAT_PRESENCE_REFRESH < CHAT_PRESENCE_EXPIRY:
    raise ImproperlyConfigured("CHAT_PRESENCE_REFRESH must be above 0 and below _EXPIRY.")
# A presence frame names at most this many online users (by name); "count" gives them all.
CHAT_PRESENCE_LIST_MAX = int(os.environ.get("CHAT_PRESENCE_LIST_MAX", "100"))
# One typing frame per socket per this many seconds is relayed; the rest are dropped.
CHAT_TYPING_INTERVAL = float(os.environ.get("CHAT_TYPING_INTERVAL", "2"))
# Typing is off in a room with more members online than this (Zulip's rule).
CHAT_TYPING_MAX_ONLINE = int(os.environ.get("CHAT_TYPING_MAX_ONLINE", "100"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
        # Axes logs every attempt at INFO; its warnings (failures, lockouts) are enough, and
        # chatapp.security logs each failed login with its username and address.
        "axes": {"level": "WARNING"},
    },
}
