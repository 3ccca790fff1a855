"""Real ``redis-server`` processes on loopback, for tests, the soak script and benchmarks.

:class:`LocalRedis` starts one server on a free port in a temporary folder (plain, with a
password, with TLS, with ``maxmemory``, with persistence) and :class:`LocalRedisCluster` a
3-node cluster made by ``redis-cli --cluster create``; both stop their processes and remove
their folder on exit and give the store URI to use. The configuration goes to a file in the
folder, so a password never shows on a command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "install it: apt-get install -y redis-server"


class PortTaken(RuntimeError):
    """The server could not bind its port."""


class RedisServerMissing(RuntimeError):
    """``redis-server`` (or ``redis-cli``, ``openssl``) is not on PATH."""


def _require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        package = "openssl" if program == "openssl" else "redis-server"
        raise RedisServerMissing(f"{program} is not installed; install it: "
                                 f"apt-get install -y {package}")
    return found


def free_port(*, with_bus: bool = False) -> int:
    """A loopback TCP port nobody listens on now (and, ``with_bus``, port + 10000 too: the
    cluster bus)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not with_bus:
            return port
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port found")


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate,
    made by ``openssl`` in ``folder``; returns the paths by name (``ca``, ``server_cert``,
    ``server_key``, ``client_cert``, ``client_key``)."""
    openssl = _require("openssl")
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=dv365 test CA")
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=dv365 test {name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
            "-extfile", f"{name}.ext")
    return {"ca": folder / "ca.crt", "server_cert": folder / "server.crt",
            "server_key": folder / "server.key", "client_cert": folder / "client.crt",
            "client_key": folder / "client.key"}


class _Running:
    """A context manager that starts on enter and stops on exit."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalRedis(_Running):
    """One ``redis-server`` on 127.0.0.1, as a context manager.

    ``password`` sets ``requirepass``; ``tls`` serves TLS only (``tls-port``, ``port 0``)
    with certificates made in the folder, ``tls_auth_clients`` also demands the client
    certificate; ``maxmemory`` (bytes) with ``noeviction`` refuses writes past it;
    ``persist`` turns on the append-only file so :meth:`restart` after :meth:`kill` finds
    the data again. ``folder`` keeps the server's files there (not removed on exit).
    """

    def __init__(self, *, password: str | None = None, tls: bool = False,
                 tls_auth_clients: bool = False, maxmemory: int | None = None,
                 persist: bool = False, folder: str | Path | None = None,
                 extra: dict[str, str] | None = None):
        self.password = password
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.maxmemory = maxmemory
        self.persist = persist
        self.extra = dict(extra or {})
        self._own_folder = folder is None
        self.folder = Path(folder) if folder is not None else None
        self.port: int | None = None
        self.certificates: dict[str, Path] = {}
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalRedis":
        server = _require("redis-server")
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="dv365-redis-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.tls and not self.certificates:
            self.certificates = make_certificates(self.folder / "tls")
        pick = self.port is None  # a restart keeps its port; a port picked here may be
        for attempt in range(5):  # taken by another process before the server binds it
            if pick:
                self.port = free_port(with_bus=self.extra.get("cluster-enabled") == "yes")
            conf = self.folder / "redis.conf"
            conf.write_text("\n".join(f"{k} {v}" for k, v in self._config().items()) + "\n")
            conf.chmod(0o600)
            log = self.folder / "redis.log"
            mark = log.stat().st_size if log.exists() else 0
            self.process = subprocess.Popen([server, str(conf)], cwd=self.folder,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                self._wait_ready(log, mark)
                return self
            except PortTaken:
                if not pick or attempt == 4:
                    raise
        return self

    def _config(self) -> dict[str, str]:
        config = {"bind": "127.0.0.1", "protected-mode": "no", "daemonize": "no",
                  "dir": str(self.folder), "logfile": str(self.folder / "redis.log"),
                  "save": '""', "appendonly": "yes" if self.persist else "no",
                  "appendfsync": "no"}
        if self.tls:
            certs = self.certificates
            config.update({"port": "0", "tls-port": str(self.port),
                           "tls-cert-file": str(certs["server_cert"]),
                           "tls-key-file": str(certs["server_key"]),
                           "tls-ca-cert-file": str(certs["ca"]),
                           "tls-auth-clients": "yes" if self.tls_auth_clients else "no"})
        else:
            config["port"] = str(self.port)
        if self.password is not None:
            config["requirepass"] = self.password
        if self.maxmemory is not None:
            config.update({"maxmemory": str(self.maxmemory), "maxmemory-policy": "noeviction"})
        config.update(self.extra)
        return config

    def _wait_ready(self, log: Path, mark: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace").strip()
                tail = log.read_text(errors="replace")[mark:].strip() if log.exists() else ""
                problem = PortTaken if "already in use" in tail + err else RuntimeError
                self.process.stderr.close()
                raise problem(f"redis-server exited with {self.process.returncode}: "
                              f"{(err or tail)[-600:]}")
            if log.exists():
                with open(log, "rb") as f:
                    f.seek(mark)
                    if b"Ready to accept connections" in f.read():
                        return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} not ready after {timeout_s:g} s")

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> "LocalRedis":
        """Start the server again on the same port and folder (after :meth:`kill`)."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Stop the server (and remove its folder if this object made it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        if self._own_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    # ---------------------------------------------------------------------------- names
    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def uri(self, db: int = 0, *, password: str | None = None, **options: str) -> str:
        """The store URI of this server (its password unless another is given; TLS files
        in the query), extra ``options`` appended to the query."""
        password = self.password if password is None else password
        auth = f":{password}@" if password else ""
        query = dict(options)
        if self.tls:
            query.setdefault("ca", str(self.certificates["ca"]))
            if self.tls_auth_clients:
                query.setdefault("cert", str(self.certificates["client_cert"]))
                query.setdefault("key", str(self.certificates["client_key"]))
        scheme = "rediss" if self.tls else "redis"
        text = f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"
        if query:
            text += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return text

    def cli(self, *args: str) -> str:
        """Run ``redis-cli`` against this server; its output."""
        cmd = [_require("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            cmd += ["--tls", "--cacert", str(self.certificates["ca"])]
            if self.tls_auth_clients:
                cmd += ["--cert", str(self.certificates["client_cert"]),
                        "--key", str(self.certificates["client_key"])]
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        done = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env,
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


class LocalRedisCluster(_Running):
    """A Redis Cluster of ``nodes`` masters (no replicas) on loopback, as a context manager;
    :meth:`uri` names one node (the cluster client discovers the others)."""

    def __init__(self, nodes: int = 3):
        self.folder: Path | None = None
        self.count = nodes
        self.nodes: list[LocalRedis] = []

    def start(self) -> "LocalRedisCluster":
        cli = _require("redis-cli")
        self.folder = Path(tempfile.mkdtemp(prefix="dv365-redis-cluster-"))
        try:
            for i in range(self.count):
                node = LocalRedis(folder=self.folder / f"node{i}",
                                  extra={"cluster-enabled": "yes",
                                         "cluster-config-file": "nodes.conf",
                                         "cluster-node-timeout": "5000"})
                self.nodes.append(node.start())
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok after {timeout_s:g} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def uri(self, **options: str) -> str:
        text = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"
        if options:
            text += "?" + "&".join(f"{k}={v}" for k, v in options.items())
        return text
