"""A real PostgreSQL server for tests: initdb into a temporary folder, pg_ctl start on a free
loopback port, stopped at the end.

The server binaries are found under /usr/lib/postgresql/*/bin (or $FACEGATE_PG_BIN). initdb
refuses to run as root, so as root every command runs as the ``postgres`` user (runuser).
Without binaries the tests that need it are skipped, unless FACEGATE_REQUIRE_POSTGRES=1
(.ci/run sets it), which makes a missing server a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def pg_bin() -> Path | None:
    if os.environ.get("FACEGATE_PG_BIN"):
        return Path(os.environ["FACEGATE_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="facegate-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        argv = [str(self.bindir / cmd[0]), *cmd[1:]]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                "-c fsync=off -c max_connections=100")
        args = ["pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l",
                str(self.root / "log.txt")]
        if action != "stop":
            args += ["-o", opts]
        else:
            args += ["-m", "fast"]
        self._run(*args, action)

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "log.txt"
        return path.read_text() if path.exists() else ""
