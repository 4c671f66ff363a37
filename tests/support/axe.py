"""axe-core, the accessibility engine (npm ``axe-core``, pinned in package.json), run in pages
that Playwright drives.

The package is installed into the project's node_modules by ``npm ci`` the first time a test
needs it (skipped without npm, a failure under CI=true, as for the other programs).
"""

import subprocess
import threading
from pathlib import Path

from .server import ROOT, require_program

AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# Impacts the tests refuse (axe reports minor, moderate, serious and critical).
SERIOUS = ("serious", "critical")
_install = threading.Lock()


def axe_source() -> str:
    """The text of axe.min.js, installing the pinned package first when it is missing."""
    with _install:
        if not AXE_JS.exists():
            npm = require_program("npm", "npm")
            # npm ci installs exactly package-lock.json; CI=true only quiets its progress bar.
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
    return Path(AXE_JS).read_text()


def axe_install(context) -> None:
    """Make ``axe`` available on every page of a browser context.

    An init script, not a <script> tag: it is not subject to the page's Content-Security-Policy
    and is there before the page's own scripts run."""
    context.add_init_script(script=axe_source())


def axe_violations(page, impacts: tuple[str, ...] = SERIOUS) -> list[dict]:
    """axe's WCAG 2 A/AA violations on ``page`` of the given impacts, each summarised as
    {id, impact, help, targets} so a failure says what to fix and where."""
    results = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                            "wcag22aa", "best-practice"]},
            resultTypes: ["violations"],
        })"""
    )
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "targets": [node["target"] for node in violation["nodes"]][:5],
            "summary": violation["nodes"][0].get("failureSummary", "")[:300],
        }
        for violation in results["violations"]
        if violation["impact"] in impacts
    ]
