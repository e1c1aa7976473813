"""The embedded MongoDB stand-in: a SecantusDB server in a child process.

SecantusDB speaks the MongoDB wire protocol, so c360 reaches it through the same driver code
as a real MongoDB. It runs as a child process rather than a thread so that its work does not
compete with c360's event loop for the GIL. It is GPL-2.0-only and ships in the optional
`embedded` extra; a deployment that sets C360_MONGO_URL never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from sources.net import free_port, stop_process

log = logging.getLogger(__name__)


class EmbeddedMongoError(RuntimeError):
    """The embedded MongoDB server could not be started."""


# SecantusDB reads its data at startup: the 100,000-customer bench dataset (5 million
# interactions) takes it 40 s to open on 2 cores. A server that exits is noticed at once.
STARTUP_TIMEOUT = 180.0
# A server that dies is started again after a pause that doubles, up to the most, each time it
# dies again soon after a start (or fails to start); one that stayed up a while starts afresh.
RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
STABLE_SECONDS = 60.0


@contextlib.contextmanager
def embedded_mongo(
    storage_path: Path, *, startup_timeout: float = STARTUP_TIMEOUT
) -> Iterator[str]:
    """Run SecantusDB on a free port over `storage_path`, restarted if it dies; yields its URL."""
    try:
        import secantus  # noqa: F401
    except ImportError as error:
        raise EmbeddedMongoError(
            "C360_MONGO_URL is not set and the embedded MongoDB (SecantusDB) is not installed; "
            "install the 'embedded' extra (pip install 'c360[embedded]') or set C360_MONGO_URL"
        ) from error
    storage_path.mkdir(parents=True, exist_ok=True)
    server = _EmbeddedServer(storage_path, free_port(), startup_timeout)
    server.start()
    supervisor = threading.Thread(
        target=server.supervise, name="embedded-mongo-supervisor", daemon=True
    )
    supervisor.start()
    try:
        yield server.url
    finally:
        server.stop()
        supervisor.join()


class _EmbeddedServer:
    """One SecantusDB server over one storage path, on one port for its whole life.

    The port stays the same across restarts, so the URL every client (and every uvicorn worker)
    was given stays right; the drivers reconnect by themselves.
    """

    def __init__(self, storage_path: Path, port: int, startup_timeout: float) -> None:
        self.storage_path = storage_path
        self.port = port
        self.url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        self.startup_timeout = startup_timeout
        self.log_path = storage_path.parent / "secantus.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        # Held while a process is started or stopped: stop() never misses one being started.
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the server and wait until it answers; EmbeddedMongoError when it does not."""
        with self._lock:
            if self._stopping.is_set():
                raise EmbeddedMongoError("the embedded MongoDB is stopping")
            with open(self.log_path, "ab") as log_file:
                log_start = log_file.tell()
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "secantus",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                        "--storage-path",
                        str(self.storage_path),
                        "--log-level",
                        "WARNING",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # Its own process group: a Ctrl-C (or a signal) meant for c360's group
                    # would reach it too, and it would be restarted while c360 shuts down.
                    # c360 stops it itself, and _die_with_parent if c360 cannot.
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            self._process = process
        _wait_until_answering(self.url, process, self.startup_timeout, self.log_path, log_start)

    def supervise(self) -> None:
        """Start the server again whenever it dies, until `stop()`; one log line per change."""
        # Run in a thread of its own, which lives as long as the server: a server it restarts
        # is that thread's child, and the kernel's parent-death signal follows the thread.
        delay = RESTART_DELAY
        started = time.monotonic()
        while True:
            process = self._process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                delay = RESTART_DELAY
            log.warning(
                "the embedded MongoDB exited with code %s; restarting it in %gs (see %s)",
                code,
                delay,
                self.log_path,
            )
            failed = 0
            while True:
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, RESTART_DELAY_MAX)
                started = time.monotonic()
                try:
                    self.start()
                except EmbeddedMongoError as error:
                    if self._stopping.is_set():
                        return
                    failed += 1
                    # A restart that keeps failing is one state, said once; each try is in
                    # secantus.log and at debug level.
                    log.log(
                        logging.WARNING if failed == 1 else logging.DEBUG,
                        "the embedded MongoDB did not restart: %s; trying again, at least every "
                        "%gs",
                        error,
                        RESTART_DELAY_MAX,
                    )
                    continue
                log.info(
                    "the embedded MongoDB is answering again on port %d (after %d failed starts)",
                    self.port,
                    failed,
                )
                break

    def stop(self) -> None:
        """Stop the server and its supervision."""
        self._stopping.set()
        with self._lock:
            if self._process is not None:
                stop_process(self._process, timeout=15)


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
            with open(log_path, "rb") as server_log:
                server_log.seek(log_start)
                output = server_log.read().decode(errors="replace")
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
