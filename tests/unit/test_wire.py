"""The hand-written Redis wire: URL -> connection settings, RESP packing, error replies."""

from __future__ import annotations

import ssl
from urllib.parse import quote

import hiredis
import pytest
from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from backend.redis.wire import CommandPrefix, ServerAddress, pack_command, reply_error

CA_FILE = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"

URLS = [
    "redis://127.0.0.1:6379/0",
    "redis://app:s3cret@10.0.0.5:6380?db=4",
    "redis://app:s3cret@10.0.0.5:6380/7",
    "redis://:only-password@redis.internal:6379/2",
    "redis://user%40corp:p%2Fw%3A@host:1/0",
    "unix:///run/redis/redis.sock?db=3&password=pw",
    "unix:///run/redis/redis.sock?db=5&username=app&password=pw",
    f"rediss://app:pw@redis.internal:6380/1?ssl_ca_certs={quote(CA_FILE)}",
    f"rediss://redis.internal:6380?db=2&ssl_ca_certs={quote(CA_FILE)}&ssl_cert_reqs=required&ssl_check_hostname=true",
    "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    "rediss://127.0.0.1:6380/0?ssl_cert_reqs=optional",
]


@pytest.mark.parametrize("url", URLS)
def test_address_means_what_redis_py_reads(url: str) -> None:
    expected = parse_url(url)
    address = ServerAddress.from_url(url)
    assert address.path == expected.get("path")
    if address.path is None:
        assert (address.host, address.port) == (expected["host"], expected.get("port", 6379))
    assert address.username == expected.get("username")
    assert address.password == expected.get("password")
    assert address.db == expected.get("db", 0)
    assert (address.tls is not None) == url.startswith("rediss://")


@pytest.mark.parametrize(
    ("query", "verify", "check_hostname"),
    [
        ("", ssl.CERT_REQUIRED, True),
        ("?ssl_cert_reqs=none&ssl_check_hostname=false", ssl.CERT_NONE, False),
        ("?ssl_cert_reqs=optional&ssl_check_hostname=false", ssl.CERT_OPTIONAL, False),
        ("?ssl_check_hostname=false", ssl.CERT_REQUIRED, False),
    ],
)
def test_tls_options_build_redis_pys_own_context(query: str, verify: ssl.VerifyMode, check_hostname: bool) -> None:
    address = ServerAddress.from_url("rediss://redis.internal:6380/0" + query)
    assert address.tls is not None
    assert address.tls.verify_mode == verify
    assert address.tls.check_hostname is check_hostname
    assert address.server_hostname == "redis.internal"


def test_a_cluster_node_keeps_credentials_and_tls_but_not_the_database() -> None:
    seed = ServerAddress.from_url("rediss://app:pw@seed:7000/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    node = seed.at("10.0.0.9", 7003)
    assert (node.host, node.port, node.username, node.password, node.db) == ("10.0.0.9", 7003, "app", "pw", 0)
    assert node.tls is seed.tls and node.server_hostname == "10.0.0.9"


@pytest.mark.parametrize(
    "parts",
    [
        ("PING",),
        ("EVALSHA", "a" * 40, 2, "ai:{u:1}:session:ff", "ai:{u:1}:user"),
        ("SET", "k", "välue ✓", "EX", 60),
        ("PUBLISH", b"chan", b"\x00\xff binary\r\n"),
        ("HINCRBY", "h", "f", -3),
        ("ZADD", "z", 1.5, "m"),
    ],
)
def test_packed_commands_are_byte_equal_to_redis_py(parts: tuple) -> None:
    assert pack_command(*parts) == b"".join(Connection().pack_command(*parts))


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_prefixed_command_equals_the_whole_command_packed(chunks: int) -> None:
    prefix = CommandPrefix("EVALSHA", "f" * 40, 3, "k1", "k2", "k3", 7, "tok", 86400, "ch", "PUBLISH")
    rest = [b"1"] + [part for _ in range(chunks) for part in (b'{"content":"h\xc3\xa9"}', "hé".encode())]
    filled = prefix.with_args(*rest)
    assert filled == pack_command("EVALSHA", "f" * 40, 3, "k1", "k2", "k3", 7, "tok", 86400, "ch", "PUBLISH", *rest)
    reader = hiredis.Reader()
    reader.feed(filled)
    assert reader.gets()[11:] == rest  # well-formed: a RESP parser reads it back whole


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError),
        ("READONLY You can't write against a read only replica.", ReadOnlyError),
        ("NOAUTH Authentication required.", AuthenticationError),
        ("WRONGPASS invalid username-password pair or user is disabled.", AuthenticationError),
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", MasterDownError),
        ("CLUSTERDOWN The cluster is down", ClusterDownError),
        ("TRYAGAIN Multiple keys request during rehashing of slot", TryAgainError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", ResponseError),
    ],
)
def test_error_replies_become_redis_py_exceptions(reply: str, kind: type) -> None:
    assert type(reply_error(hiredis.ReplyError(reply))) is kind
