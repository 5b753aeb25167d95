"""A Spark standalone cluster on 127.0.0.1 from the pyspark pip distribution: one master, N workers.

The pip distribution has no ``sbin/start-*.sh``; its ``bin/spark-class`` runs the master and worker
classes in the foreground, so each is a child process here, in its own process group (a worker's
executor JVM and that executor's Python workers are its descendants: ``kill_worker`` takes them all).
Used by the cluster tests and ``bench/bench_scale.py``; the jobs themselves only see a
``spark://127.0.0.1:PORT`` master URL, as on any real cluster.

    with StandaloneCluster(workers=2, root=tmp) as cluster:
        subprocess.run(["rexdrug", "sweep", "--master", cluster.master_url, ...])

Every process binds 127.0.0.1 (``--host`` and ``SPARK_LOCAL_IP``: without it Spark binds the machine's
external interface).  Each worker has its own work and local folders and its own cwd (``root/wN``);
``worker_env`` is the whole environment the workers (and so the executors) get.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The pyspark package folder: the pip distribution's SPARK_HOME (bin/spark-class, jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class ClusterError(RuntimeError):
    pass


class StandaloneCluster:
    """Start with ``start()`` (or ``with``); ``stop()`` always kills every process it started."""

    def __init__(
        self,
        root: Path,
        workers: int = 2,
        cores: int = 1,
        memory: str = "1g",
        worker_env: dict[str, str] | None = None,
        start_timeout_s: float = 120.0,
    ):
        if workers < 1 or cores < 1:
            raise ValueError("a cluster needs >= 1 worker with >= 1 core")
        self.root = Path(root).resolve()
        self.n_workers, self.cores, self.memory = workers, cores, memory
        self.worker_env = dict(worker_env) if worker_env is not None else dict(os.environ)
        self.start_timeout_s = start_timeout_s
        self.port = self.webui_port = 0
        self.master: _Process | None = None
        self.workers: list[_Process] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Self:
        try:
            self._start_master()
            for i in range(self.n_workers):
                self.workers.append(self._start_worker(i + 1))
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every process group started here (workers first), and reap them."""
        for process in [*self.workers, *([self.master] if self.master else [])]:
            _kill_group(process.proc)
        self.workers, self.master = [], None

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> _Process:
        cwd.mkdir(parents=True, exist_ok=True)
        log_path = self.root / f"{name}.log"
        env = {**env, "SPARK_LOCAL_IP": HOST, "SPARK_HOME": str(spark_home()), "SPARK_NO_DAEMONIZE": "1"}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return _Process(name, proc, log_path)

    def _start_master(self) -> None:
        self.port, self.webui_port = free_port(), free_port()
        self.master = self._spawn(
            "master",
            [MASTER_CLASS, "--host", HOST, "--port", str(self.port), "--webui-port", str(self.webui_port)],
            self.worker_env,
            self.root / "master",
        )
        self._wait(lambda: self.state() is not None, "the master to answer on its web UI", [self.master])

    def _start_worker(self, index: int) -> _Process:
        folder = self.root / f"w{index}"
        env = {**self.worker_env, "SPARK_LOCAL_DIRS": str(folder / "local")}
        return self._spawn(
            f"worker{index}",
            [
                WORKER_CLASS,
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--work-dir",
                str(folder / "work"),
                "--host",
                HOST,
                "--port",
                str(free_port()),
                "--webui-port",
                str(free_port()),
                self.master_url,
            ],
            env,
            folder,
        )

    # ------------------------------------------------------------------ state

    def state(self) -> dict | None:
        """The master's JSON status page (``/json/``), or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.webui_port}/json/", timeout=5) as resp:
                return json.load(resp)
        except (OSError, ValueError):
            return None

    def alive_workers(self) -> list[dict]:
        state = self.state() or {}
        return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]

    def wait_for_workers(self, n: int) -> None:
        self._wait(
            lambda: len(self.alive_workers()) >= n,
            f"{n} worker(s) to register",
            [p for p in [self.master, *self.workers] if p],
        )

    def _wait(self, ready, what: str, processes: list[_Process]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not ready():
            dead = [p for p in processes if p.proc.poll() is not None]
            if dead:
                raise ClusterError(
                    f"{dead[0].name} exited ({dead[0].proc.returncode}) while waiting for "
                    f"{what}:\n{dead[0].tail()}"
                )
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in processes)
                raise ClusterError(f"timed out after {self.start_timeout_s:.0f}s waiting for {what}\n{tails}")
            time.sleep(0.5)

    def kill_worker(self, index: int = 0) -> None:
        """kill -9 worker ``index`` (0-based) with its executor JVM and Python workers (its process group)."""
        process = self.workers[index]
        _kill_group(process.proc)
        log.info("killed %s (pid %d) and its executor", process.name, process.proc.pid)

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.workers)


def _kill_group(proc: subprocess.Popen) -> None:
    # The whole group, even when its leader has exited: an executor JVM outlives a worker that died
    # alone.  start_new_session made the leader's pid the group id.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        log.error("process %d did not exit after SIGKILL", proc.pid)
