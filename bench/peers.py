"""The benchmark's peer: a local redis-server, started and stopped here."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from ecmem.localprocs import free_port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> redis.Redis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed: run 'make setup'")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--maxmemory",
                "0",
                "--proto-max-bulk-len",
                "1gb",
            ],
            stdout=open(self.workdir / "redis.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
