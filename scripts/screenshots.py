"""Take the README's screenshots from a real server: `.venv/bin/python scripts/screenshots.py`.

Starts uvicorn on the embedded default (a fresh SQLite database, the in-memory layer), lets
three people talk through the real forms and sockets, then photographs alice's view in Chromium
at 1280 px and at 375 px into docs/.
"""

import asyncio
import json
import sys
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import chromium  # noqa: E402
from tests.support.server import cookie_header, live_server, room_create, signup  # noqa: E402

DOCS = ROOT / "docs"

GENERAL = [
    ("bob", "Morning! The **v2.3 deploy** is at 14:00, notes: https://example.com/release-notes"),
    ("carol", "`make test` is green on main. Two things left:\n- the search index\n- the docs"),
    ("alice", "I'll take the docs. @bob can you watch the dashboards during the deploy?"),
    ("bob", "> watch the dashboards\n\nSure, I'll post anything odd in *deploys*."),
]
DEPLOYS = [
    ("bob", "Deploying v2.3 to the first node now"),
    ("bob", "First node healthy, moving on to the rest"),
]
DIRECT = [("bob", "Coffee after the deploy?")]


async def _say(server, client, path: str, lines: list[tuple[str, str]], who: str) -> None:
    """Post ``who``'s lines in order through a real room socket, waiting for each echo."""
    url = f"{server.ws_url}/ws{path}"
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie_header(client)}, origin=server.url
    ) as socket:
        for author, body in lines:
            if author != who:
                continue
            await socket.send(json.dumps({"type": "message", "body": body}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                if frame.get("type") == "message" and frame.get("body") == body:
                    break


async def _conversation(server, clients, path: str, lines: list[tuple[str, str]]) -> None:
    for author, body in lines:  # one line at a time, so the order is the script's
        await _say(server, clients[author], path, [(author, body)], author)


def main() -> None:
    with live_server() as server:
        clients = {name: signup(server.url, name) for name in ("alice", "bob", "carol")}
        general = room_create(clients["alice"], "general")
        deploys = room_create(clients["bob"], "deploys")
        for name in ("bob", "carol"):
            clients[name].get(general).raise_for_status()
        clients["alice"].get(deploys).raise_for_status()  # joined before bob's news
        direct = clients["bob"].get("/dm/alice/").headers["location"]
        asyncio.run(_conversation(server, clients, general, GENERAL))
        asyncio.run(_conversation(server, clients, deploys, DEPLOYS))
        asyncio.run(_conversation(server, clients, direct, DIRECT))

        def cookies_of(name: str) -> list[dict]:
            jar = clients[name].cookies.items()
            return [{"name": k, "value": v, "url": server.url} for k, v in jar]

        cookies = cookies_of("alice")
        with chromium() as browser:
            # bob has the room open too, so the online list shows two people.
            bobs = browser.new_context(viewport={"width": 1280, "height": 800})
            bobs.add_cookies(cookies_of("bob"))
            bobs.new_page().goto(server.url + general)
            for width, height, name in ((1280, 800, "screenshot.png"), (375, 740, "phone.png")):
                context = browser.new_context(viewport={"width": width, "height": height})
                context.add_cookies(cookies)
                page = context.new_page()
                page.goto(server.url + general)
                page.wait_for_selector("#status.status-open", timeout=10_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(DOCS / name))
                if width < 600:
                    page.click("#sidebar-toggle")
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(DOCS / "phone-sidebar.png"))
                context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 640})
            context.add_cookies(cookies)
            page = context.new_page()
            page.goto(server.url + "/search/?q=deplo")
            page.screenshot(path=str(DOCS / "search.png"))
            context.close()
    print("wrote docs/screenshot.png, docs/phone.png, docs/phone-sidebar.png, docs/search.png")


if __name__ == "__main__":
    main()
