"""A throwaway PostgreSQL 15 cluster for the ``pg`` tests, started by the test session itself.

``initdb`` + ``pg_ctl`` in a temporary directory, on a free port of 127.0.0.1 and a private
unix-socket directory, trust auth for local connections only; stopped and deleted at the end.
``pg_ctl`` refuses to run as root, so as root the commands run as the ``postgres`` user
(``runuser -u postgres --``). With ``BTC_TEST_PG_URL`` set (a server URL whose user may
CREATE DATABASE), that server is used instead and nothing is started.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV_URL = "BTC_TEST_PG_URL"


class PgUnavailable(RuntimeError):
    """No server can be started here; the message says why (the pg tests skip with it)."""


@dataclass
class PgServer:
    admin_url: str  # postgresql+psycopg://user@host:port/postgres
    datadir: Path | None = None
    run_as: list[str] | None = None
    bindir: Path | None = None

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.datadir is None:
            return
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, found)
    if not candidates:
        raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not installed; "
                            "install Debian's postgresql-15 or set BTC_TEST_PG_URL")
    return Path(candidates[0]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> PgServer:
    """The server named by BTC_TEST_PG_URL, or a fresh local cluster."""
    url = os.environ.get(ENV_URL)
    if url:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return PgServer(admin_url=url)
    bindir = _bindir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgUnavailable("running as root and there is no 'postgres' user to run pg_ctl as") from None
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="btc-pg-"))
    datadir, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    if run_as:
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockdir, "postgres", "postgres")
    user = "postgres" if run_as else pwd.getpwuid(os.geteuid()).pw_name
    init = subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(datadir), "-U", user, "--auth=trust",
                           "-E", "UTF8", "--no-sync"], capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PgUnavailable(f"initdb failed: {(init.stderr or init.stdout).strip().splitlines()[-1:]}")
    port = _free_port()
    opts = f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l",
                            str(root / "server.log"), "-w", "-t", "60", "start"], capture_output=True, text=True,
                           timeout=90)
    if start.returncode != 0:
        log = (root / "server.log").read_text(errors="replace")[-500:] if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise PgUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]} {log}")
    return PgServer(admin_url=f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres", datadir=datadir,
                    run_as=run_as, bindir=bindir)
