"""A real souk server for the tests: a temporary data directory with an
admin account, `souk serve` on free ports, and its certificate fingerprint
read from the banner, as an app would pin it.

The binary is `SOUK_BIN`, or the workspace's debug build. Under
SOUK_REQUIRE_ALL_TESTS=1 (CI) a missing binary or native library fails the
run instead of skipping it."""

import os
import queue
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[3]
REQUIRE_ALL = os.environ.get("SOUK_REQUIRE_ALL_TESTS", "") not in ("", "0")
ADMIN_EMAIL = "admin@shop.example"
ADMIN_PASSWORD = "admin-password-for-tests"


def unavailable(reason):
    if REQUIRE_ALL:
        pytest.fail(f"SOUK_REQUIRE_ALL_TESTS=1 and {reason}")
    pytest.skip(reason)


def souk_bin():
    path = Path(os.environ.get("SOUK_BIN", WORKSPACE / "target" / "debug" / "souk"))
    if not path.is_file():
        unavailable(f"no souk binary at {path} (cargo build -p souk-server, or set SOUK_BIN)")
    return path


@dataclass
class Server:
    address: str
    fingerprint: str
    data_dir: Path
    process: subprocess.Popen


def read_banner(process, timeout_s=60):
    """The QUIC address and the certificate fingerprint the server prints."""
    lines = queue.Queue()

    def pump():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    address = fingerprint = None
    seen = []
    while address is None or fingerprint is None:
        try:
            line = lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"souk printed no banner in {timeout_s} s: {seen}")
        if line is None:
            raise RuntimeError(f"souk exited before it was ready: {seen}")
        seen.append(line)
        if line.startswith("souk listening on "):
            address = line.split()[3]
        elif line.startswith("certificate SHA-256 fingerprint: "):
            fingerprint = line.rsplit(" ", 1)[1].strip()
    return address, fingerprint


def start_server(binary, data_dir, demo_products=40):
    common = ["--data-dir", str(data_dir), "--pin-threads", "false", "--log", "warn"]
    process = subprocess.Popen(
        [str(binary), "serve", *common, "--listen", "127.0.0.1:0", "--http-listen", "off",
         "--shards", "2", "--demo-products", str(demo_products)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        address, fingerprint = read_banner(process)
    except Exception:
        process.kill()
        raise
    return Server(address, fingerprint, data_dir, process)


@pytest.fixture(scope="session")
def server():
    try:
        import souk  # noqa: F401
    except (ImportError, OSError) as error:
        unavailable(f"the souk package cannot load ({error}): pip install ./client-sdk/python")
    binary = souk_bin()
    data_dir = Path(tempfile.mkdtemp(prefix="souk-python-test-"))
    created = subprocess.run(
        [str(binary), "create-admin", "--data-dir", str(data_dir), "--pin-threads", "false", "--log", "warn",
         "--email", ADMIN_EMAIL],
        input=f"{ADMIN_PASSWORD}\n", text=True, capture_output=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr + created.stdout
    running = start_server(binary, data_dir)
    yield running
    running.process.terminate()
    try:
        running.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        running.process.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def options(server):
    import souk

    return souk.ClientOptions(server=server.address, pinned_sha256=server.fingerprint,
                              client_name="souk-python-tests")
