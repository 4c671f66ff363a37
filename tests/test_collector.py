"""A process that serves the application (it imports chatproject/asgi.py) hides what start-up
made from the cycle collector and collects young objects less often (ops.collector), and still
collects the cycles it makes afterwards."""

import subprocess
import sys

from ops.collector import YOUNG

from .support.server import ROOT, server_env

PROBE = """
import gc
import chatproject.asgi
frozen, young = gc.get_freeze_count(), gc.get_threshold()[0]

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made while serving
del a, b
print(frozen, young, gc.collect())
"""


def test_a_serving_process_freezes_start_up_and_still_collects_new_cycles():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    frozen, young, collected = map(int, result.stdout.split())
    assert frozen > 50_000  # Django, the apps and their modules
    assert young == YOUNG
    assert collected >= 2
