"""A slow-drip HTTP server for `bot_latency.py --slow-downloads`: a body a few bytes a second.

Run by the benchmark inside the network namespace it made (`ip netns exec NS python
benchmarks/drip_server.py ...`), never on its own against another address. Every GET
gets `200`, a `Content-Length` of `--size` bytes (a zip's signature, then zeros) and then
`--bytes` bytes every `--tick` seconds, so a download stays in progress for days. It
keeps `--status` (JSON, replaced atomically) up to date: connections open now, accepted
so far, and bytes dripped, so the benchmark can say how many downloads were still going.

Kept apart from bot_latency.py so that the process in the namespace imports nothing but
the standard library (the benchmark itself pulls in pytest, Pillow and the fake Bot API).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Drip:
    def __init__(self, status: Path, size: int, chunk: int, tick: float):
        self.status, self.size, self.chunk, self.tick = status, size, chunk, tick
        self.lock = threading.Lock()
        self.open = self.accepted = self.bytes_sent = 0
        self.paths: list[str] = []
        self.listening = ""

    def write(self) -> None:
        with self.lock:
            state = {
                "listening": self.listening,
                "open": self.open,
                "accepted": self.accepted,
                "bytes_sent": self.bytes_sent,
                "paths": self.paths,
                "time": time.time(),
            }
            partial = self.status.with_suffix(".tmp")
            partial.write_text(json.dumps(state))
            os.replace(partial, self.status)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        drip = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with drip.lock:
                    drip.open += 1
                    drip.accepted += 1
                    drip.paths.append(self.path)
                drip.write()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    self.send_header("Content-Length", str(drip.size))
                    self.end_headers()
                    body = b"PK\x03\x04" + bytes(drip.size - 4)
                    for start in range(0, drip.size, drip.chunk):
                        self.wfile.write(body[start : start + drip.chunk])
                        self.wfile.flush()
                        with drip.lock:
                            drip.bytes_sent += len(body[start : start + drip.chunk])
                        drip.write()
                        time.sleep(drip.tick)
                except OSError:  # the client went away: that download is over
                    pass
                finally:
                    with drip.lock:
                        drip.open -= 1
                    drip.write()
                    self.close_connection = True

            def log_message(self, format: str, *args) -> None:
                print(f"{time.strftime('%H:%M:%S')} {self.client_address[0]} {format % args}", flush=True)

        return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="the address inside the namespace to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--status", type=Path, required=True, help="JSON file kept up to date")
    parser.add_argument("--size", type=int, default=2**20, help="declared body size in bytes")
    parser.add_argument("--bytes", type=int, default=4, help="bytes sent every tick")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between drips")
    args = parser.parse_args()
    drip = Drip(args.status, args.size, args.bytes, args.tick)
    server = ThreadingHTTPServer((args.host, args.port), drip.handler())
    server.daemon_threads = True
    drip.listening = f"{args.host}:{server.server_address[1]}"
    drip.write()
    print(f"dripping {args.bytes} bytes every {args.tick} s on {drip.listening}", flush=True)
    server.serve_forever()  # until SIGTERM from the benchmark
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
