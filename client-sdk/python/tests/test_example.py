"""The example script a developer copies still works against a live server."""

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shopper.py"


def test_the_shopper_script_orders(server):
    run = subprocess.run([sys.executable, str(EXAMPLE), server.address, server.fingerprint],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert re.search(r"order \d+: (PENDING_PAYMENT|PAID), ", run.stdout), run.stdout
