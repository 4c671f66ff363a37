"""Production settings switched by the environment, the health probes and the deployment check."""

import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.test import override_settings

from .support.server import ROOT, server_env
from .support.services import redis_server

PROBE = """
import json
from django.conf import settings
layer = settings.CHANNEL_LAYERS["default"]
host = layer.get("CONFIG", {}).get("hosts", [{}])[0]
db = settings.DATABASES["default"]
out = {
    "backend": layer["BACKEND"],
    "address": host.get("address"),
    "socket_timeout": host.get("socket_timeout"),
    "keepalive": host.get("socket_keepalive", False),
    "cache": settings.CACHES["default"]["BACKEND"],
    "db_engine": db["ENGINE"],
    "conn_max_age": db["CONN_MAX_AGE"],
    "pool": db.get("OPTIONS", {}).get("pool"),
    "prepare_threshold": db.get("OPTIONS", {}).get("prepare_threshold", "absent"),
    "ssl_header": settings.SECURE_PROXY_SSL_HEADER,
    "secure_cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "debug": settings.DEBUG,
}
if out["address"]:
    from realtime.layers import pool_create
    out["connection"] = pool_create(host).connection_class.__name__
print(json.dumps(out))
"""


def settings_for(**env: str) -> dict:
    """The settings a server process would get with ``env``."""
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{PROBE}"],
        cwd=ROOT,
        env=server_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("url", "connection", "keepalive"),
    [
        ("redis://10.1.2.3:6379/0", "Connection", True),
        ("rediss://user:pw@redis.example:6380/0", "SSLConnection", True),
        ("unix:///run/redis/redis.sock?db=0", "UnixDomainSocketConnection", False),
    ],
)
def test_redis_url_switches_the_layer_and_the_cache(url, connection, keepalive):
    got = settings_for(REDIS_URL=url)
    assert got["backend"] == "realtime.layers.RedisChannelLayer"
    assert got["address"] == url
    assert got["connection"] == connection
    assert got["keepalive"] is keepalive
    # Longer than the core layer's 5 s blocking read (django/channels_redis#422).
    assert got["socket_timeout"] > 5
    assert got["cache"] == "django.core.cache.backends.redis.RedisCache"


def test_pubsub_layer_is_a_choice():
    got = settings_for(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_CHANNEL_LAYER="pubsub")
    assert got["backend"] == "channels_redis.pubsub.RedisPubSubChannelLayer"


def test_a_redis_url_of_another_scheme_is_refused_by_name():
    env = server_env(REDIS_URL="http://127.0.0.1:6379")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "REDIS_URL must start with redis://, rediss://" in result.stderr


def test_database_url_uses_a_psycopg_pool_per_process():
    got = settings_for(DATABASE_URL="postgres://chat:secret@db.example:5432/chat", DB_POOL_MAX="5")
    assert got["db_engine"] == "django.db.backends.postgresql"
    assert got["conn_max_age"] == 0
    assert got["pool"]["max_size"] == 5


def test_the_hot_statements_are_prepared_unless_turned_off():
    """psycopg prepares a statement only when asked (chatapp.prepared.statement_cursor) or
    past ``prepare_threshold`` uses: set past reach, so only the hot statements are; None
    (Django's default, DB_PREPARED=0) prepares none, for a pooler that cannot keep them."""
    url = "postgres://chat:secret@db.example:5432/chat"
    assert settings_for(DATABASE_URL=url)["prepare_threshold"] == 2**31 - 1
    assert settings_for(DATABASE_URL=url, DB_PREPARED="0")["prepare_threshold"] is None
    assert settings_for()["prepare_threshold"] == "absent"  # SQLite


def test_defaults_are_production_safe_and_tls_proxy_is_opt_in():
    plain = settings_for()
    assert plain["debug"] is False
    assert plain["ssl_header"] is None
    assert plain["secure_cookies"] == [False, False]
    behind = settings_for(BEHIND_TLS_PROXY="1")
    assert behind["ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert behind["secure_cookies"] == [True, True]


@pytest.mark.django_db
def test_healthz_answers_and_readyz_checks_database_and_layer(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_an_unreachable_channel_layer(client):
    # A closed port on loopback: Redis "down".
    unreachable = {
        "default": {
            "BACKEND": "realtime.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
    with override_settings(CHANNEL_LAYERS=unreachable):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert "ConnectionError" in body["checks"]["channel_layer"]


def test_the_check_warns_about_the_in_memory_layer_in_production(capsys):
    call_command("check")
    assert "ops.W001" in capsys.readouterr().err
    with override_settings(DEBUG=True):
        call_command("check")
    assert "ops.W001" not in capsys.readouterr().err
    layer = {"default": {"BACKEND": "realtime.layers.RedisChannelLayer", "CONFIG": {}}}
    with override_settings(CHANNEL_LAYERS=layer):
        call_command("check")
    assert "ops.W001" not in capsys.readouterr().err


ROUND_TRIP = """
import asyncio
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("room-1", channel)
    await layer.group_send("room-1", {"type": "hub.frame", "seq": 1})
    message = await asyncio.wait_for(layer.receive(channel), 10)
    print("received", message["seq"])

asyncio.run(main())
from django.core.cache import cache
cache.set("probe", "cached", 30)
print(cache.get("probe"))
"""


@pytest.mark.server
@pytest.mark.parametrize("kind", ["core", "pubsub"])
def test_a_unix_socket_redis_url_carries_events_and_the_cache(kind):
    with redis_server() as server:
        env = server_env(REDIS_URL=server.unix_url, REDIS_CHANNEL_LAYER=kind)
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup()\n{ROUND_TRIP}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    lines = result.stdout.strip().splitlines()[-2:]
    assert lines == ["received 1", "cached"], result.stderr[-2000:]


def test_the_embedded_default_starts_without_loading_redis_clients():
    """A restart's new process serves once ``chatproject.asgi`` is imported and its lifespan
    has checked the layer (bench S5): without REDIS_URL nothing imports channels_redis or
    redis-py's asyncio client (~50 ms of it)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, chatproject.asgi\n"
            "from channels.layers import get_channel_layer\n"
            "from ops.checks import in_memory_layer_used\n"
            "assert in_memory_layer_used() and get_channel_layer() is not None\n"
            "print([m for m in ('channels_redis.core', 'redis.asyncio') if m in sys.modules])",
        ],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
