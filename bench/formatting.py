"""What message formatting (rooms/formatting.py) costs: rendering a body, against serialising
the frame it travels in, for a new message and for a 500-message catch-up.

A body is rendered once per change, not once per socket (the frame is built once and the hub
writes the same bytes to every socket of a worker), and in the database thread of the change,
not on the event loop. Linkify dominates: a 4,000-character body that is mostly links is the
worst case, bounded per user by the rate limit.

python -m bench.formatting
"""

import time
from statistics import median
from typing import Any

import orjson

# rooms.formatting needs no Django set up: the bench process stays as it was.
from rooms.formatting import body_html

BODIES = {
    "plain (40 chars)": "Sure, coffee at three sounds good to me!",
    "markdown (120 chars)": "**Deploy** is done: see https://example.com/runs/42 and `make test`; "
    "_thanks_ to everyone who reviewed the branch today",
    "list + code (300 chars)": "Steps:\n\n- pull `main`\n- run `make test`\n- read the log\n\n"
    "```\n" + "ERROR something failed at line 12\n" * 5 + "```\n\n> the old way was slower",
    "longest (4000 chars)": ("word **bold** https://example.com/x " * 120)[:4000],
}
REPEAT = 2000
CATCHUP = 500


def _each(function, argument, repeat: int = REPEAT) -> float:
    """Median microseconds of one call, over batches of ``repeat`` calls."""
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            function(argument)
        batches.append((time.perf_counter() - started) / repeat * 1e6)
    return median(batches)


def frame_of(body: str) -> dict[str, Any]:
    """A message frame as rooms.events builds it, without its html."""
    return {
        "type": "message",
        "id": 123456,
        "seq": 98765,
        "room": "general",
        "user": "alice",
        "body": body,
        "created": "2026-11-26T15:00:00.123456Z",
        "client_id": "k3j4h5g6f7d8s9a0",
        "reply_to": None,
        "reply": None,
        "edited": None,
        "reactions": {},
    }


def run() -> dict[str, Any]:
    """Microseconds per body rendered (uncached and cached) and per frame serialised."""
    results: dict[str, Any] = {}
    for name, body in BODIES.items():
        frame = frame_of(body)
        render = _each(body_html.__wrapped__, body)
        cached = _each(body_html, body)
        serialise = _each(orjson.dumps, frame | {"html": body_html(body)})
        results[name] = {
            "render_us": round(render, 2),
            "render_cached_us": round(cached, 3),
            "serialise_us": round(serialise, 2),
            "render_per_serialise": round(render / serialise, 1),
        }
    distinct = [f"message number {n}: **see** https://example.com/{n}" for n in range(CATCHUP)]
    started = time.perf_counter()
    for body in distinct:
        body_html.__wrapped__(body)
    results[f"catch-up of {CATCHUP} distinct bodies"] = {
        "render_ms": round((time.perf_counter() - started) * 1e3, 2)
    }
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| body | render µs | cached µs | frame serialise µs | render / serialise |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        if "render_us" in row:
            lines.append(
                f"| {name} | {row['render_us']} | {row['render_cached_us']} | "
                f"{row['serialise_us']} | {row['render_per_serialise']}x |"
            )
        else:
            lines.append(f"| {name} | {row['render_ms']} ms in all | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))
