"""A private redis-server (or a 3-master cluster) on free loopback ports.

Besides a plain server: TLS with a private CA (`make_tls_files`, `RedisServer(tls=...)`), ACL users
(extra `--user ...` arguments and `url_with(username=..., password=...)`), and a stalled server
(`pause()` / `resume()`: SIGSTOP / SIGCONT).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from devstack.ports import free_port, wait_for_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server not found on PATH: install it (apt-get install redis-server)")
    return found


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate for 127.0.0.1 / localhost signed by it (PEM files)."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_tls_files(directory: str | Path | None = None) -> TlsFiles:
    """A private CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost), EC P-256 keys, made
    with the `openssl` command in `directory` (a new temporary directory by default)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("openssl not found on PATH: install it (apt-get install openssl)")
    where = Path(directory or tempfile.mkdtemp(prefix="redis-tls-"))
    files = TlsFiles(where, where / "ca.crt", where / "ca.key", where / "server.crt", where / "server.key")
    (where / "server.ext").write_text(_SERVER_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(files.ca_key),
        "-out",
        str(files.ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=devstack test CA",
        "-addext",
        "keyUsage = critical, keyCertSign, cRLSign",
    )
    run("req", "-new", *ec, "-keyout", str(files.key), "-out", str(where / "server.csr"), "-subj", "/CN=localhost")
    run(
        "x509",
        "-req",
        "-in",
        str(where / "server.csr"),
        "-CA",
        str(files.ca_cert),
        "-CAkey",
        str(files.ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(where / "server.ext"),
        "-out",
        str(files.cert),
    )
    return files


class RedisServer:
    """One redis-server on a loopback port; `tls=make_tls_files()` makes it speak only TLS on that port.
    Its files go to `data_dir` (made if missing; a new temporary directory by default)."""

    def __init__(
        self, port: int | None = None, *extra: str, tls: TlsFiles | None = None, data_dir: str | Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.tls = tls
        if data_dir is not None:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.dir = str(data_dir) if data_dir is not None else tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return self.url_with()

    def url_with(
        self, *, username: str | None = None, password: str | None = None, db: int = 0, db_in_query: bool = False
    ) -> str:
        """This server's URL, e.g. `redis://app:pw@127.0.0.1:P/0`, or `...:P?db=4` with `db_in_query`.

        A TLS server's is `rediss://127.0.0.1:P/0?ssl_ca_certs=<CA file, URL-encoded>`.
        """
        credentials = ""
        if username is not None or password is not None:
            credentials = quote(username or "", safe="")
            if password is not None:
                credentials += ":" + quote(password, safe="")
            credentials += "@"
        query = [f"db={db}"] if db_in_query else []
        if self.tls:
            query.append("ssl_ca_certs=" + quote(str(self.tls.ca_cert), safe=""))
        scheme = "rediss" if self.tls else "redis"
        path = "" if db_in_query else f"/{db}"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}{path}" + ("?" + "&".join(query) if query else "")

    def client(
        self, *, username: str | None = None, password: str | None = None, db: int = 0, **options: object
    ) -> redis.Redis:
        """A synchronous redis-py client of this server (TLS and credentials as given)."""
        return redis.Redis.from_url(self.url_with(username=username, password=password, db=db), **options)

    def start(self) -> RedisServer:
        if self.tls:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca_cert),
                "--tls-auth-clients",
                "no",
            ]
        else:
            listen = ["--port", str(self.port)]
        self.process = subprocess.Popen(
            [
                redis_binary(),
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.paused = False
        wait_for_port(self.port, process=self.process)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until the server answers a command (an ACL refusal counts: it is up) and is done loading."""
        client = self.client(socket_timeout=2)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    time.sleep(0.05)
                except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
                    return  # e.g. `--user default off`: NOAUTH is an answer
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections (and accepts new ones) but answers nothing."""
        if self.process and self.process.poll() is None and not self.paused:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        if self.process and self.paused:
            os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        self.paused = False


class RedisSentinels:
    """A master, `replicas` replicas and `count` Sentinels (quorum 2) watching it as `name`, on loopback,
    with the failover settings of a test: a master silent for `down_after_ms` is down.

    `auth` sets a password on the data nodes (Sentinel is told it: `sentinel auth-pass`);
    `sentinel_password` one on the Sentinels themselves (`requirepass`); `tls` makes every node and
    Sentinel speak only TLS (replication and Sentinel's own links too). Every helper blocks until
    the Sentinels agree (see `unsettled`) or raises TimeoutError."""

    def __init__(
        self,
        name: str = "mymaster",
        replicas: int = 1,
        count: int = 3,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        auth: str | None = None,
        sentinel_password: str | None = None,
        tls: TlsFiles | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.tls = tls
        self.auth = auth
        self.sentinel_password = sentinel_password
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        data = ("--repl-diskless-sync-delay", "0", *extra)  # a replica's first sync at once
        if auth:
            data = (*data, "--requirepass", auth, "--masterauth", auth)
        if tls:
            data = (*data, "--tls-replication", "yes")
        self.nodes = [RedisServer(None, *data, tls=tls) for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(count)]
        self.sentinel_dir = tempfile.mkdtemp(prefix="redis-sentinel-")
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.killed: list[RedisServer] = []

    @property
    def hosts(self) -> str:
        """REDIS_SENTINELS for these Sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def url(self) -> str:
        """REDIS_URL's part behind Sentinel: credentials and database (the host is not used)."""
        return self.nodes[0].url_with(password=self.auth) if self.auth else self.nodes[0].url

    def start(self) -> RedisSentinels:
        master, *replicas = self.nodes
        master.start()
        for replica in replicas:
            replica.extra = (*replica.extra, "--replicaof", "127.0.0.1", str(master.port))
            replica.start()
        for port in self.sentinel_ports:
            conf = Path(self.sentinel_dir) / f"sentinel-{port}.conf"  # Sentinel rewrites it: one each
            listen = [f"port {port}"]
            if self.tls:
                listen = [
                    "port 0",
                    f"tls-port {port}",
                    f"tls-cert-file {self.tls.cert}",
                    f"tls-key-file {self.tls.key}",
                    f"tls-ca-cert-file {self.tls.ca_cert}",
                    "tls-auth-clients no",
                    "tls-replication yes",  # Sentinel's links to the data nodes
                ]
            lines = [
                *listen,
                "bind 127.0.0.1",
                f"dir {self.sentinel_dir}",
                f"sentinel monitor {self.name} 127.0.0.1 {master.port} 2",
                f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
                f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}",
            ]
            if self.auth:
                lines.append(f"sentinel auth-pass {self.name} {self.auth}")
            if self.sentinel_password:  # asked of clients and of the other Sentinels
                lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
            conf.write_text("\n".join(lines) + "\n")
            process = subprocess.Popen(
                [redis_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.sentinels.append(process)
            wait_for_port(port, process=process)
        self.wait_settled(30, master)
        return self

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
        for process in self.sentinels:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.sentinels = []
        for node in self.nodes:
            node.stop()
            shutil.rmtree(node.dir, ignore_errors=True)
        shutil.rmtree(self.sentinel_dir, ignore_errors=True)

    # Reading the state.

    def sentinel(self, port: int) -> redis.Redis:
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)} if self.tls else {}
        return redis.Redis(port=port, password=self.sentinel_password, decode_responses=True, socket_timeout=5, **tls)

    def client(self, node: RedisServer, **options: object) -> redis.Redis:
        return node.client(password=self.auth, **options)

    def by_port(self, port: int | str) -> RedisServer:
        return next(node for node in self.nodes if node.port == int(port))

    def master(self) -> RedisServer:
        """The master as the first Sentinel names it."""
        with self.sentinel(self.sentinel_ports[0]) as sentinel:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return self.by_port(port)

    def role(self, node: RedisServer) -> str:
        with self.client(node, decode_responses=True, socket_timeout=5) as client:
            return client.info("replication")["role"]

    def unsettled(self, master: RedisServer) -> str | None:
        """Why the deployment is not settled around `master`, or None: every Sentinel names it,
        sees it up, knows the other Sentinels and every live replica as up; it says it is a master
        and each live replica says its link to it is up."""
        live = [node for node in self.nodes if node not in self.killed]
        try:
            if self.role(master) != "master":
                return f"{master.port} is not a master yet"
            for node in live:
                if node is master:
                    continue
                with self.client(node, decode_responses=True, socket_timeout=5) as client:
                    info = client.info("replication")
                if info["role"] != "slave" or int(info.get("master_port", 0)) != master.port:
                    return f"{node.port} does not replicate {master.port} yet"
                if info.get("master_link_status") != "up":
                    return f"{node.port}: master_link_status {info.get('master_link_status')}"
            for port in self.sentinel_ports:
                with self.sentinel(port) as sentinel:
                    state = sentinel.sentinel_master(self.name)
                    named = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                    replicas = sentinel.sentinel_slaves(self.name)
                if int(named[1]) != master.port:
                    return f"Sentinel {port} names {named[1]}, not {master.port}"
                if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
                    return f"Sentinel {port} does not see {master.port} up"
                if state["num-other-sentinels"] != len(self.sentinel_ports) - 1:
                    return f"Sentinel {port} knows {state['num-other-sentinels']} other Sentinels"
                up = {r["port"] for r in replicas if not (r["is_sdown"] or r["is_odown"])}
                if up != {node.port for node in live if node is not master}:
                    return f"Sentinel {port} sees replicas {sorted(up)}"
        except redis.RedisError as error:
            return str(error)
        return None

    def wait_settled(self, timeout: float, master: RedisServer | None = None) -> RedisServer:
        deadline = time.monotonic() + timeout
        while True:
            current = master or self.master()
            reason = self.unsettled(current)
            if reason is None:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Sentinel deployment did not settle within {timeout:g}s: {reason}")
            time.sleep(0.05)

    # Failovers.

    def failover(self) -> None:
        """SENTINEL FAILOVER (returns at once; the Sentinels promote a replica within seconds)."""
        with self.sentinel(self.sentinel_ports[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", self.name)

    def kill_master(self) -> RedisServer:
        """SIGKILL the master; returns it (its process gone)."""
        master = self.master()
        if master.process:
            master.process.kill()
            master.process.wait(5)
            master.process = None
        self.killed.append(master)
        return master

    def wait_new_master(self, old: RedisServer, timeout: float) -> RedisServer:
        """Until the Sentinels name another master than `old` and it says it is one."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, StopIteration):
                current = self.master()
                if current is not old and self.role(current) == "master":
                    return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new master within {timeout:g}s")
            time.sleep(0.05)


class RedisCluster:
    """Masters (each with `replicas` replicas) with `--cluster-enabled yes`, joined by `redis-cli --cluster create`,
    and the topology changes a test makes under running clients: failover, slot migration, a killed master.

    Every helper blocks until the cluster has settled (see `unsettled`) or raises TimeoutError."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        self.size, self.replicas_per_master = masters, replicas
        # A node's bus port is its port + 10000, so ports must stay at or below 55535.
        ports = _cluster_ports(masters * (1 + replicas))
        self.nodes = [
            RedisServer(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--repl-diskless-sync-delay",
                "0",
            )
            for port in ports
        ]  # a replica's first sync at once, not after the default 5 s
        self.killed: list[RedisServer] = []
        self.ids: dict[int, str] = {}  # port -> node id

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node not in self.killed]

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        redis_cli = shutil.which("redis-cli")
        if not redis_cli:
            raise RuntimeError("redis-cli not found on PATH: install it (apt-get install redis-tools)")
        subprocess.run(
            [
                redis_cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas_per_master),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.ids = {node.port: self.call(node, "CLUSTER", "MYID") for node in self.nodes}
        self.wait_settled(30, replicas=self.size * self.replicas_per_master)
        return self

    def stop(self) -> None:
        for node in self.nodes:  # all at once, then wait for each
            if node.process and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            try:
                node.stop()
            except subprocess.TimeoutExpired:
                if node.process:
                    node.process.kill()
                    node.process.wait(5)
                    node.process = None
            shutil.rmtree(node.dir, ignore_errors=True)

    # Reading the topology.

    def call(self, node: RedisServer, *args: object):  # the reply as the node sends it
        """One command on one node (not routed), answer decoded but not parsed."""
        with redis.Redis(port=node.port, decode_responses=True, socket_timeout=5) as client:
            return client.execute_command(*args)

    def node_id(self, node: RedisServer) -> str:
        return self.ids[node.port]

    def by_port(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == int(port))

    def role(self, node: RedisServer) -> str:
        """`master` or `slave`, as INFO replication says."""
        with redis.Redis(port=node.port, decode_responses=True, socket_timeout=5) as client:
            return client.info("replication")["role"]

    def masters(self) -> list[RedisServer]:
        return [node for node in self.live if self.role(node) == "master"]

    def replicas(self) -> list[RedisServer]:
        return [node for node in self.live if self.role(node) == "slave"]

    def slot_of(self, key: str) -> int:
        return int(self.call(self.live[0], "CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> RedisServer:
        """The master serving `slot`, as CLUSTER SLOTS on a live node says."""
        for start, end, master, *_ in self.call(self.live[0], "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return self.by_port(master[1])
        raise LookupError(f"slot {slot} is not served")

    def master_for_key(self, key: str) -> RedisServer:
        return self.owner(self.slot_of(key))

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A healthy replica of `master` (CLUSTER REPLICAS)."""
        for line in self.call(master, "CLUSTER", "REPLICAS", self.node_id(master)):
            fields = line.split()
            if "fail" not in fields[2] and "fail?" not in fields[2]:
                return self.by_port(fields[1].split("@")[0].rpartition(":")[2])
        raise LookupError(f"node {master.port} has no healthy replica")

    def unsettled(self, replicas: int | None = None) -> str | None:
        """Why the cluster is not settled, or None when it is: every live node says `cluster_state:ok`,
        all of them agree on one slot map that covers the 16384 slots with live masters and on who
        replicates whom (CLUSTER NODES, no live node flagged failing), and every live replica reports
        `master_link_status:up` (and there are `replicas` of them, when given)."""
        maps, views, replica_count = set(), [], 0
        for node in self.live:
            try:
                state = dict(line.split(":", 1) for line in self.call(node, "CLUSTER", "INFO").split())
                slots = tuple(
                    sorted((start, end, master[1]) for start, end, master, *_ in self.call(node, "CLUSTER", "SLOTS"))
                )
                views.append(_cluster_nodes(self.call(node, "CLUSTER", "NODES")))
                with redis.Redis(port=node.port, decode_responses=True, socket_timeout=5) as client:
                    replication = client.info("replication")
            except redis.RedisError as error:
                return f"{node.port}: {error}"
            if state["cluster_state"] != "ok":
                return f"{node.port}: cluster_state {state['cluster_state']}"
            if replication["role"] == "slave":
                replica_count += 1
                if replication.get("master_link_status") != "up":
                    return f"{node.port}: master_link_status {replication.get('master_link_status')}"
            maps.add(slots)
        if len(maps) != 1:
            return "the nodes disagree on the slot map"
        (slots,) = maps
        if sum(end - start + 1 for start, end, _ in slots) != 16384:
            return "not every slot is served"
        if {port for _, _, port in slots} - {node.port for node in self.live}:
            return "a slot is still served by a dead node"
        # Each live node's own line ("myself") is the truth about it; every view must say the same.
        truth = {node_id: seen for view in views for node_id, (myself, *seen) in view.items() if myself}
        for node, view in zip(self.live, views, strict=True):
            for node_id, seen in truth.items():
                if node_id not in view or [*view[node_id][1:]] != seen:
                    return f"{node.port} sees node {node_id} as {view.get(node_id)}, not {seen}"
        if replicas is not None and replica_count != replicas:
            return f"{replica_count} replicas, not {replicas}"
        return None

    def wait_settled(self, timeout: float = 20, replicas: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while (reason := self.unsettled(replicas)) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Redis Cluster did not settle within {timeout:g}s: {reason}")
            time.sleep(0.05)

    # Changing the topology.

    def failover(self, replica: RedisServer, timeout: float = 15) -> None:
        """A planned CLUSTER FAILOVER: `replica` takes over its master's slots; the old master becomes its replica."""
        deadline = time.monotonic() + timeout
        self.call(replica, "CLUSTER", "FAILOVER")
        while self.role(replica) != "master":
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {replica.port} did not become a master within {timeout:g}s")
            time.sleep(0.02)
        self.wait_settled(max(0.0, deadline - time.monotonic()))

    def kill(self, node: RedisServer, timeout: float = 20) -> None:
        """SIGKILL `node`; when it was a master, waits until a replica serves its slots."""
        if node.process:
            node.process.kill()
            node.process.wait(5)
        self.killed.append(node)
        self.wait_settled(timeout)

    def migrate_slot(
        self, slot: int, source: RedisServer, target: RedisServer, batch: int = 100, timeout: float = 15
    ) -> int:
        """Moves `slot` from master `source` to master `target` the manual way; returns how many keys moved."""
        deadline = time.monotonic() + timeout
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self.call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        with redis.Redis(port=source.port, socket_timeout=10) as client:  # bytes: keys exactly as stored
            while keys := client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"slot {slot} still has keys on {source.port} after {timeout:g}s")
                client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
        others = [node for node in self.masters() if node not in (source, target)]
        for node in (target, source, *others):
            self.call(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_settled(max(0.0, deadline - time.monotonic()))
        return moved


def _cluster_nodes(text: str) -> dict[str, tuple[bool, str, str, bool]]:
    """CLUSTER NODES as {node id: (is it the answering node, role, its master's id or "-", healthy)}."""
    view = {}
    for line in text.splitlines():
        node_id, _address, flags, master, *_ = line.split()
        flag_set = set(flags.split(","))
        role = "master" if "master" in flag_set else "slave"
        healthy = not flag_set & {"fail", "fail?", "handshake", "noaddr"}
        view[node_id] = ("myself" in flag_set, role, master, healthy)
    return view


def _cluster_ports(count: int) -> list[int]:
    """`count` free ports at or below 55535 whose cluster bus port (port + 10000) is free too."""
    import socket

    ports: list[int] = []
    while len(ports) < count:
        port = free_port(55535)
        if {port, port + 10000, port - 10000} & set(ports):
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports
