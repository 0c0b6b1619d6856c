#!/usr/bin/env python3
"""A loopback model API with a limit, for benches/providers.sh.

    mock_provider.py --port-file F (--concurrent K | --per-minute N) [--work S]

POST /call: with --concurrent K, at most K calls are served at once (each takes S seconds)
and a call beyond them is answered 429 at once; with --per-minute N, at most N calls start
in any 60 s window and one beyond is answered 429 with a Retry-After of the seconds until a
place frees. GET /stats: {"calls", "refused", "served", "busy_s"} as JSON; POST /reset
zeroes them. With --log F, one line a call is appended to F: its task (the X-Task header),
its arrival and end (Unix seconds), its status and the agent's first line (X-Started), for
support/provider/breakdown.py. Binds 127.0.0.1 only; writes the port it got to F.
"""
import argparse
import json
import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"calls": 0, "refused": 0, "served": 0, "busy_s": 0.0}
active = 0
starts = deque()


def admit(args):
    """(True, None) to serve the call, (False, retry_after) to refuse it."""
    global active
    now = time.monotonic()
    with lock:
        stats["calls"] += 1
        if args.concurrent:
            if active >= args.concurrent:
                stats["refused"] += 1
                return False, None
            active += 1
            return True, None
        while starts and now - starts[0] >= 60.0:
            starts.popleft()
        if len(starts) >= args.per_minute:
            stats["refused"] += 1
            return False, max(1, math.ceil(60.0 - (now - starts[0])))
        starts.append(now)
        active += 1
        return True, None


def log_call(headers, arrived, status):
    if ARGS.log:
        task, started = headers.get("X-Task", "-"), headers.get("X-Started", "0")
        with lock, open(ARGS.log, "a") as f:
            f.write("%s %.4f %.4f %d %s\n" % (task, arrived, time.time(), status, started))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def reply(self, code, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.reply(200, dict(stats))

    def do_POST(self):
        global active
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/reset":
            with lock:
                for k in stats:
                    stats[k] = 0
                starts.clear()
            return self.reply(200, {})
        t_arrived = time.time()
        ok, retry_after = admit(ARGS)
        if not ok:
            log_call(self.headers, t_arrived, 429)
            headers = [("Retry-After", str(retry_after))] if retry_after else []
            return self.reply(
                429,
                {"type": "error", "error": {"type": "rate_limit_error",
                                            "message": "Number of concurrent requests exceeded"}},
                headers,
            )
        t0 = time.monotonic()
        time.sleep(ARGS.work)
        with lock:
            active -= 1
            stats["served"] += 1
            stats["busy_s"] += time.monotonic() - t0
        log_call(self.headers, t_arrived, 200)
        self.reply(200, {"text": "done", "cost_usd": 0.01})


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--concurrent", type=int)
    g.add_argument("--per-minute", type=int)
    p.add_argument("--work", type=float, default=2.0)
    p.add_argument("--log")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(ARGS.port_file + ".tmp", ARGS.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
