"""A real Ray cluster started with the ``ray`` command line, for ``ray job submit`` tests.

Two nodes on this machine, as ``ray up`` would start them on two: a head started with
``ray start --head`` (no GPUs) and a worker started with ``ray start --address`` that declares
fake GPUs and the ``gpu_node`` resource of ``cluster.yaml``. Token authentication is on: the
token is generated with ``ray get-auth-token --generate`` into a private home folder and every
process finds it through ``RAY_AUTH_TOKEN_PATH``.

Isolation from the test session's own Ray instance (``ray.init("local")`` in conftest) and from
anything else on the machine: a fresh ``--temp-dir``, every listening port chosen free, the job
server bound to 127.0.0.1, ``RAY_ADDRESS`` removed from the environment.

Shutdown: both ``ray start`` processes run with ``--block`` in their own process group; ``ray
start --block`` stops its children when it gets SIGTERM. Whatever is still alive afterwards
(found by the private temp dir in its command line) is killed by process id. ``ray stop`` is not
used: it stops every Ray process on the machine, whoever started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


class RayCliCluster:
    """Start with :meth:`start`, always :meth:`stop` (it is safe after a failed start)."""

    def __init__(self, *, worker_gpus: int = 2, cpus_per_node: int = 2, env: dict | None = None):
        # /tmp, not pytest's tmp_path: Ray's Unix socket paths must stay under ~107 characters.
        self.root = Path(tempfile.mkdtemp(prefix="raymix-cluster-", dir="/tmp"))
        self.temp_dir = self.root / "ray"
        self.home = self.root / "home"
        self.home.mkdir()
        self.token_path = self.home / ".ray" / "auth_token"
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.worker_gpus = worker_gpus
        self.cpus_per_node = cpus_per_node
        self.env = self._base_env(env)
        self.processes: list[subprocess.Popen] = []

    def _base_env(self, extra: dict | None) -> dict:
        # Nothing of this process's Ray, S3 or import-path settings leaks into the cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_")) and k != "PYTHONPATH"}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_path),
            RAY_USAGE_STATS_ENABLED="0",
            # SIGTERM stops a node at once instead of draining it for up to 30 s first.
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
            RAY_DATA_DISABLE_PROGRESS_BARS="1",
            HF_HUB_OFFLINE="1",
        )
        env.update(extra or {})
        return env

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> RayCliCluster:
        # --generate writes ~/.ray/auth_token, and refuses to run while RAY_AUTH_TOKEN_PATH
        # names a file that does not exist yet.
        generate_env = {k: v for k, v in self.env.items() if k != "RAY_AUTH_TOKEN_PATH"}
        generated = subprocess.run(
            ["ray", "get-auth-token", "--generate"],
            env={**generate_env, "HOME": str(self.home)}, capture_output=True, text=True, timeout=60,
        )
        if generated.returncode != 0 or not self.token_path.is_file():
            raise RuntimeError(f"ray get-auth-token --generate failed: {generated.stderr}")
        self._spawn("head", [
            "ray", "start", "--head", "--block", f"--port={self.gcs_port}",
            f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp_dir}",
            f"--num-cpus={self.cpus_per_node}", "--num-gpus=0", "--object-store-memory=200000000",
            "--disable-usage-stats", *_node_ports(),
        ])
        self._wait(self._job_server_up, "the job server")
        if self.worker_gpus:
            self._spawn("worker", [
                "ray", "start", "--block", f"--address=127.0.0.1:{self.gcs_port}",
                f"--num-cpus={self.cpus_per_node}", f"--num-gpus={self.worker_gpus}",
                "--resources=" + json.dumps({"gpu_node": 1}), "--object-store-memory=200000000",
                *_node_ports(),
            ])
            self._wait(lambda: len(self.alive_nodes()) == 2, "the worker node")
        return self

    def stop(self) -> list[str]:
        """Stop every process of this cluster; returns the command lines that had to be killed."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        killed = []
        for _ in range(20):
            stray = self.leftover_processes()
            if not stray:
                break
            for p in stray:
                try:
                    killed.append(" ".join(p.cmdline()[:2]))
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(stray, timeout=5)
        return killed

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_processes(self) -> list[psutil.Process]:
        marker = str(self.root)
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(marker in arg for arg in p.info["cmdline"] or ()):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    # -- commands ---------------------------------------------------------------------------

    def ray(self, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``ray ARGS`` as a user on this machine would, with the cluster's token."""
        return subprocess.run(["ray", *args], env=env or self.env, capture_output=True, text=True, timeout=timeout)

    def submit(self, *entrypoint: str, working_dir: str | os.PathLike, runtime_env_json: dict | None = None,
               submission_id: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir DIR [--runtime-env-json ...] -- ENTRYPOINT``; waits for the end."""
        args = ["job", "submit", f"--address={self.dashboard_url}", f"--working-dir={working_dir}"]
        if runtime_env_json is not None:
            args.append("--runtime-env-json=" + json.dumps(runtime_env_json))
        if submission_id:
            args.append(f"--submission-id={submission_id}")
        return self.ray(*args, "--", *entrypoint, timeout=timeout)

    def alive_nodes(self) -> list[dict]:
        request = urllib.request.Request(
            f"{self.dashboard_url}/api/v0/nodes",
            headers={"Authorization": f"Bearer {self.token_path.read_text().strip()}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            nodes = json.loads(response.read())["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.processes.append(subprocess.Popen(
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        log.close()

    def _job_server_up(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2).close()
        except urllib.error.HTTPError as err:  # 401 without a token: the server is up
            return err.code == 401
        return True

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"a ray start process exited while waiting for {what}:\n{self.logs()}")
            try:
                if ready():
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{what} did not come up in {STARTUP_TIMEOUT_S} s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.root.glob("*.log")))
