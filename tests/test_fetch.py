"""pipeline.fetch: address vetting as a pure function, and real fetches from a server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.fetch import (
    GENERIC_MESSAGE,
    FetchError,
    FetchTooLarge,
    MinimumRate,
    address_allowed,
    fetch_to_file,
    open_url,
    vet,
)


@pytest.mark.parametrize(
    "address, public, private",
    [
        ("93.184.216.34", True, True),
        ("2606:4700:4700::1111", True, True),
        ("127.0.0.1", False, False),
        ("127.8.9.10", False, False),
        ("::1", False, False),
        ("0.0.0.0", False, False),
        ("::", False, False),
        ("10.1.2.3", False, True),
        ("172.16.0.9", False, True),
        ("192.168.1.1", False, True),
        ("fd12:3456::1", False, True),
        ("169.254.169.254", False, False),  # cloud metadata: link-local, never
        ("fe80::1%2", False, False),
        ("224.0.0.251", False, False),
        ("ff02::1", False, False),
        ("240.0.0.1", False, False),
        ("255.255.255.255", False, False),
        ("100.64.0.1", False, False),  # carrier-grade NAT: neither public nor RFC 1918
        ("192.0.2.1", False, False),
        ("::ffff:127.0.0.1", False, False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", False, False),  # mapped addresses are reserved as such
        ("2002:7f00:1::1", False, False),  # 6to4 carrying 127.0.0.1
        ("2002:808:808::1", True, True),  # 6to4 carrying 8.8.8.8
        ("64:ff9b::7f00:1", False, False),  # NAT64 carrying 127.0.0.1
        ("64:ff9b::808:808", True, True),  # NAT64 carrying 8.8.8.8 (DNS64 networks)
    ],
)
def test_address_policies(address, public, private):
    assert address_allowed(address, "public") is public
    assert address_allowed(address, "private") is private
    assert address_allowed(address, "any") is True


def test_unknown_policy_is_a_programming_error():
    with pytest.raises(ValueError, match="public, private, any"):
        address_allowed("8.8.8.8", "open")


def _answers(*addresses, port=80):
    return lambda host, number: [
        (
            socket.AF_INET6 if ":" in a else socket.AF_INET,
            socket.SOCK_STREAM,
            6,
            "",
            (a, port) if ":" not in a else (a, port, 0, 0),
        )
        for a in addresses
    ]


def test_vet_refuses_a_name_with_any_disallowed_answer():
    assert [sockaddr[0] for _, sockaddr in vet("ok.test", 80, "public", _answers("93.184.216.34"))] == ["93.184.216.34"]
    with pytest.raises(FetchError) as caught:
        vet("mixed.test", 80, "public", _answers("93.184.216.34", "127.0.0.1"))
    assert "127.0.0.1" in caught.value.detail and str(caught.value) == GENERIC_MESSAGE
    with pytest.raises(FetchError):
        vet("lan.test", 80, "public", _answers("192.168.0.5"))
    assert vet("lan.test", 80, "private", _answers("192.168.0.5"))


class _Recorder:
    def __init__(self):
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        recorder: _Recorder = self.server.recorder
        with recorder.lock:
            recorder.requests.append((self.path, self.headers.get("Host")))
        route = getattr(self, "_" + self.path.strip("/").split("/")[0].split("?")[0], None)
        if route is None:
            self._send(404, b"no")
        else:
            route()

    def _send(self, status: int, body: bytes, **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _file(self):
        self._send(200, b"PK" + bytes(1000))

    def _hop(self):
        self._send(302, b"", Location=f"http://hop2.test:{self.server.server_port}/file")

    def _loop(self):
        self._send(302, b"", Location="/loop")

    def _toftp(self):
        self._send(302, b"", Location="ftp://127.0.0.1/file.zip")

    def _big(self):
        self._send(200, bytes(5000))

    def _unsized(self):  # no Content-Length: only counting the bytes finds out
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(bytes(5000))
        self.close_connection = True

    def _drip(self):  # a body that never ends, a byte at a time
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(400):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def _slowhead(self):  # headers that never end
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for number in range(400):
                self.wfile.write(f"X-{number}: y\r\n".encode())
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.recorder = _Recorder()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _url(httpd, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{httpd.server_port}{path}"


def test_any_policy_downloads_from_loopback(server, tmp_path):
    target = tmp_path / "a.zip"
    assert fetch_to_file(_url(server, "/file"), target, policy="any", max_bytes=10_000, timeout=10) == 1002
    assert target.read_bytes() == b"PK" + bytes(1000)


@pytest.mark.parametrize("policy", ["public", "private"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "2130706433"])
def test_loopback_is_refused_before_any_request(server, tmp_path, policy, host):
    target = tmp_path / "a.zip"
    with pytest.raises(FetchError) as caught:
        fetch_to_file(_url(server, "/file", host), target, policy=policy, max_bytes=10_000, timeout=10)
    assert str(caught.value) == GENERIC_MESSAGE
    assert server.recorder.requests == [] and not target.exists()


def test_every_failure_has_the_same_message(server, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    failures = []
    for url, policy in [
        (_url(server, "/file"), "public"),
        (_url(server, "/missing"), "any"),
        (f"http://127.0.0.1:{closed_port}/a.zip", "any"),
        ("http://no-such-host.invalid/", "any"),
        ("ftp://127.0.0.1/a.zip", "any"),
        (_url(server, "/toftp"), "any"),
    ]:
        with pytest.raises(FetchError) as caught:
            fetch_to_file(url, tmp_path / "a.zip", policy=policy, max_bytes=10_000, timeout=10)
        failures.append(caught.value)
    assert {str(error) for error in failures} == {GENERIC_MESSAGE}
    assert len({error.detail for error in failures}) == len(failures)  # the log still tells them apart
    assert not (tmp_path / "a.zip").exists()


def test_each_redirect_hop_is_resolved_and_vetted_and_the_vetted_address_is_used(server, tmp_path):
    """hop2.test exists only in our resolver: reaching it proves the connection used the vetted answer."""
    asked = []

    def resolver(host, port):
        asked.append(host)
        return socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)

    url = _url(server, "/hop", "hop1.test")
    assert fetch_to_file(url, tmp_path / "a.zip", policy="any", max_bytes=10_000, timeout=10, resolver=resolver) == 1002
    assert asked == ["hop1.test", "hop2.test"]
    port = server.server_port
    assert server.recorder.requests == [("/hop", f"hop1.test:{port}"), ("/file", f"hop2.test:{port}")]
    asked.clear()
    with pytest.raises(FetchError):  # the same chain under "public": refused at the first answer
        fetch_to_file(url, tmp_path / "a.zip", policy="public", max_bytes=10_000, timeout=10, resolver=resolver)
    assert asked == ["hop1.test"] and len(server.recorder.requests) == 2


def test_redirects_are_bounded(server, tmp_path):
    with pytest.raises(FetchError) as caught:
        fetch_to_file(_url(server, "/loop"), tmp_path / "a.zip", policy="any", max_bytes=10_000, timeout=10)
    assert "redirects" in caught.value.detail
    assert len(server.recorder.requests) == 6


@pytest.mark.parametrize("path", ["/big", "/unsized"])
def test_size_cap_with_or_without_content_length(server, tmp_path, path):
    target = tmp_path / "a.zip"
    with pytest.raises(FetchTooLarge) as caught:
        fetch_to_file(_url(server, path), target, policy="any", max_bytes=4096, timeout=10)
    assert caught.value.limit == 4096 and not target.exists()


@pytest.mark.parametrize("path", ["/drip", "/slowhead"])
def test_one_deadline_for_the_whole_fetch(server, tmp_path, path):
    """Each read gets data within 50 ms, so a per-read timeout would wait 20 s; the deadline is 1 s."""
    target = tmp_path / "a.zip"
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_to_file(_url(server, path), target, policy="any", max_bytes=10**6, timeout=1.0)
    assert time.monotonic() - started < 3
    assert isinstance(caught.value.cause, TimeoutError) and not target.exists()


def test_a_drip_below_the_minimum_rate_is_cut_after_the_grace(server, tmp_path):
    """A slow drip holds a shared download thread only for the grace, not for the whole deadline."""
    target = tmp_path / "a.zip"
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_to_file(
            _url(server, "/drip"),
            target,
            policy="any",
            max_bytes=10**6,
            timeout=30,
            min_rate=MinimumRate(bytes_per_s=10**6, grace_s=0.5),
        )
    assert 0.5 <= time.monotonic() - started < 3 and "too slow" in caught.value.detail
    assert not target.exists()


def test_abort_ends_a_fetch_at_once(server, tmp_path):
    abort = threading.Event()
    threading.Timer(0.3, abort.set).start()
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_to_file(_url(server, "/drip"), tmp_path / "a.zip", policy="any", max_bytes=10**6, timeout=30, abort=abort)
    assert time.monotonic() - started < 2 and "aborted" in caught.value.detail
    assert not (tmp_path / "a.zip").exists()


def test_open_url_hands_back_other_statuses_for_the_caller(server):
    with open_url(_url(server, "/missing"), policy="any", timeout=10) as response:
        assert response.status == 404 and response.read() == b"no"


def test_resolution_counts_against_the_deadline(server, tmp_path):
    def slow_dns(host, port):
        time.sleep(3)
        return socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)

    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_to_file(
            _url(server, "/file", "slow.test"),
            tmp_path / "a.zip",
            policy="any",
            max_bytes=10_000,
            timeout=0.5,
            resolver=slow_dns,
        )
    assert time.monotonic() - started < 1.5 and isinstance(caught.value.cause, TimeoutError)
    assert server.recorder.requests == []


def test_non_ascii_paths_are_percent_encoded(server, tmp_path):
    with pytest.raises(FetchError):  # a 404, but the request went out well-formed
        fetch_to_file(_url(server, "/données é.zip?q=ü"), tmp_path / "a.zip", policy="any", max_bytes=10, timeout=5)
    assert server.recorder.requests[0][0] == "/donn%C3%A9es%20%C3%A9.zip?q=%C3%BC"


@pytest.mark.parametrize("policy", ["public", "private"])
def test_pretrained_weights_obey_the_url_policy(server, tmp_path, policy):
    from pipeline.errors import WeightsError
    from pipeline.train.weights import fetch_checkpoint

    for url in (
        _url(server, "/w/ckpt.tar.gz"),
        _url(server, "/w/ckpt.tar.gz", "localhost"),
        (tmp_path / "local.tar.gz").as_uri(),
        str(tmp_path / "local.tar.gz"),
    ):
        with pytest.raises(WeightsError) as caught:
            fetch_checkpoint(url, tmp_path / "cache", policy=policy)
        assert "refused" not in str(caught.value) and "does not exist" not in str(caught.value)
    assert server.recorder.requests == []


def test_cli_train_takes_the_url_policy():
    import argparse

    from pipeline.cli import train as cli_train
    from pipeline.train.config import TrainRequest

    parser = argparse.ArgumentParser()
    cli_train.add_commands(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    assert parser.parse_args(["train", "ws"]).url_policy == "any"
    assert parser.parse_args(["train", "ws", "--url-policy", "public"]).url_policy == "public"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "ws", "--url-policy", "open"])
    args = parser.parse_args(["train", "ws", "--model", "mobilenetv2-fpn", "--url-policy", "private"])
    assert cli_train._request(args, workspace=None, hardware=None).url_policy == "private"
    assert TrainRequest("m").url_policy == "any"
