"""Log in through the product's real login form and keep the session cookie."""

import asyncio
import re

import httpx

_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Log ``username`` in at ``/login/`` as a browser would; returns a ``Cookie`` header value.

    GET the form (Django sets ``csrftoken``), POST the credentials with the form's token, and
    keep the ``sessionid`` the login sets.
    """
    client.cookies.clear()
    page = await client.get("/login/")
    page.raise_for_status()
    match = _TOKEN.search(page.text)
    token = match.group(1) if match else client.cookies.get("csrftoken", "")
    response = await client.post(
        "/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{client.base_url}/login/"},
    )
    session = client.cookies.get("sessionid")
    if response.status_code not in (200, 302) or not session:
        raise RuntimeError(f"login of {username!r} failed ({response.status_code})")
    return f"sessionid={session}"


async def login_many(
    base_url: str, credentials: list[tuple[str, str]], concurrency: int = 4
) -> list[str]:
    """Log several users in, a few at a time; returns their ``Cookie`` header values in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(username: str, password: str) -> str:
        async with gate, httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            return await login(client, username, password)

    return list(await asyncio.gather(*(one(u, p) for u, p in credentials)))


def login_sync(base_url: str, credentials: list[tuple[str, str]]) -> list[str]:
    """``login_many`` for callers without an event loop."""
    return asyncio.run(login_many(base_url, credentials))
