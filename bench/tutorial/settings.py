"""Minimal Django settings for the tutorial-style peer (no database, no auth).

``BENCH_TUTORIAL_REDIS_URL`` switches the channel layer from in-memory to channels_redis; both
keep the tutorial's default layer options (capacity 100 per channel, expiry 60 s).
"""

import os

SECRET_KEY = "bench-tutorial-peer-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "bench.tutorial.urls"
DATABASES: dict = {}
USE_TZ = True
ASGI_APPLICATION = "bench.tutorial.asgi.application"

REDIS_URL = os.environ.get("BENCH_TUTORIAL_REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
