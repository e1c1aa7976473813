"""The embedded MongoDB stand-in: a SecantusDB server in a child process.

SecantusDB speaks the MongoDB wire protocol, so c360 reaches it through the same driver code
as a real MongoDB. It runs as a child process rather than a thread so that its work does not
compete with c360's event loop for the GIL. It is GPL-2.0-only and ships in the optional
`embedded` extra; a deployment that sets C360_MONGO_URL never imports it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from sources.net import free_port, stop_process


class EmbeddedMongoError(RuntimeError):
    """The embedded MongoDB server could not be started."""


# SecantusDB reads its data at startup: the 100,000-customer bench dataset (5 million
# interactions) takes it 40 s to open on 2 cores. A server that exits is noticed at once.
STARTUP_TIMEOUT = 180.0


@contextlib.contextmanager
def embedded_mongo(
    storage_path: Path, *, startup_timeout: float = STARTUP_TIMEOUT
) -> Iterator[str]:
    """Run SecantusDB on a free port over `storage_path`; yields its MongoDB URL."""
    try:
        import secantus  # noqa: F401
    except ImportError as error:
        raise EmbeddedMongoError(
            "C360_MONGO_URL is not set and the embedded MongoDB (SecantusDB) is not installed; "
            "install the 'embedded' extra (pip install 'c360[embedded]') or set C360_MONGO_URL"
        ) from error
    storage_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = storage_path.parent / "secantus.log"
    with open(log_path, "ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                str(storage_path),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        _wait_until_answering(url, process, startup_timeout, log_path, log_start)
        yield url
    finally:
        stop_process(process, timeout=15)


def _die_with_parent() -> None:
    # If c360 dies without stopping it (killed outright, or uvicorn re-raising SIGTERM after
    # its shutdown, which skips our cleanup), the server must not outlive it holding the data
    # lock. SIGKILL, not SIGTERM: SecantusDB's own SIGTERM shutdown was seen to hang for
    # minutes when its parent was gone; WiredTiger's journal recovers the data on next start.
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _wait_until_answering(
    url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path, log_start: int
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = f"the embedded MongoDB exited with code {process.returncode}; see {log_path}"
            with open(log_path, "rb") as log:
                log.seek(log_start)
                output = log.read().decode(errors="replace")
            if "resource busy" in output:
                reason = (
                    f"{log_path.parent} is in use by another c360 or SecantusDB process; stop it "
                    f"or set C360_DATA_DIR to another directory ({reason})"
                )
            raise EmbeddedMongoError(reason)
        client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=250)
        try:
            client.admin.command("ping")
            return
        except PyMongoError:
            time.sleep(0.1)
        finally:
            client.close()
    process.kill()
    raise EmbeddedMongoError(
        f"the embedded MongoDB did not answer within {timeout}s; see {log_path}"
    )


def remove_storage(storage_path: Path) -> None:
    """Delete an embedded store's data (tests use a fresh one per session)."""
    shutil.rmtree(storage_path, ignore_errors=True)
