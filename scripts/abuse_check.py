#!/usr/bin/env python3
"""Measures how `syncconfig serve` stands up to the abuse of issue 13, section 6.

Starts `syncconfig serve` on an embedded PostgreSQL in a temporary directory (or on --dsn),
then, one after the other:
  slowloris   40 connections send a request line, then one header line every 2 s;
  half-sent   40 connections send half a request and then nothing;
  flood       N connections opened as fast as possible and held, sending nothing;
  rate limit  one client sends requests back to back (the server runs with --rate-limit);
while a prober asks GET /health once a second (2 s timeout) and, for the flood, a /watch stream
receives a write every 0.5 s. Prints what the prober and the watcher saw. The results are in
docs/reliability.md, "Abuse". Python 3 standard library only.

  scripts/abuse_check.py [--bin build/src/cli/syncconfig] [--dsn DSN] [--flood 5000]
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time


def health(port, timeout=2.0):
    """Latency of GET /health in seconds, or None if it failed or took longer than timeout."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - start)))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while not data.startswith(b"HTTP/1.1 200") and len(data) < 12:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                return time.monotonic() - start
    except OSError:
        pass
    return None


class Prober(threading.Thread):
    """GET /health once a second until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.results, self.stop = port, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            self.results.append(health(self.port))
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))

    def summary(self):
        ok = [r for r in self.results if r is not None]
        worst = f", slowest {max(ok) * 1000:.0f} ms" if ok else ""
        return f"/health answered {len(ok)} of {len(self.results)}{worst}"


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(True)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def attackers(port, first_bytes, count=40):
    """`count` connections that each sent `first_bytes`, and a started prober."""
    conns = []
    for _ in range(count):
        s = connect(port)
        s.sendall(first_bytes)
        conns.append(s)
    prober = Prober(port)
    prober.start()
    return conns, prober


def slowloris(port, seconds=30):
    conns, prober = attackers(port, b"GET /health HTTP/1.1\r\n")
    end, closed = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        for s in list(conns):
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                conns.remove(s)
                closed += 1
        time.sleep(2)  # The attacker's pace.
    prober.stop.set()
    prober.join()
    for s in conns:
        s.close()
    return f"slowloris (40 x one header line / 2 s, {seconds} s): {prober.summary()}; " \
           f"{closed} of 40 attackers cut off by the server"


def half_sent(port, seconds=15):
    conns, prober = attackers(
        port, b"PUT /settings/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"")
    time.sleep(seconds)
    prober.stop.set()
    prober.join()
    for s in conns:
        s.close()
    return f"half-sent requests (40, {seconds} s): {prober.summary()}"


class Watcher(threading.Thread):
    """A /watch stream; records when each change event arrives."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.arrived, self.ready = port, {}, threading.Event()

    def run(self):
        s = connect(self.port)
        s.settimeout(None)
        s.sendall(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
            self.ready.set()
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data: ") and b'"key":"flood-probe"' in line:
                        value = json.loads(line[6:])["value"]
                        self.arrived.setdefault(value, time.monotonic())


def put(port, key, value):
    body = json.dumps(value).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PUT /settings/" + key.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        return s.recv(4096).startswith(b"HTTP/1.1 200")


def flood(port, count, seconds=15):
    watcher = Watcher(port)
    watcher.start()
    watcher.ready.wait(10)
    # The writer holds one connection opened before the flood (a client already connected).
    conns, refused, began = [], 0, time.monotonic()
    for _ in range(count):
        try:
            conns.append(connect(port))
        except OSError:
            refused += 1
    opened = time.monotonic() - began
    prober = Prober(port)
    prober.start()
    sent = {}
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        i += 1
        sent[i] = time.monotonic()
        try:
            put(port, "flood-probe", i)
        except OSError:
            sent.pop(i)
        time.sleep(0.5)
    time.sleep(1)
    prober.stop.set()
    prober.join()
    for s in conns:
        s.close()
    lat = [watcher.arrived[v] - t for v, t in sent.items() if v in watcher.arrived]
    worst = f", slowest {max(lat) * 1000:.0f} ms" if lat else ""
    return (f"flood ({count} connections opened in {opened:.1f} s, {refused} refused at connect, "
            f"held {seconds} s): {prober.summary()}; the open /watch stream got "
            f"{len(lat)} of {len(sent)} writes{worst}")


def rate_limited(port, requests=2000):
    codes = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        for _ in range(requests):
            s.sendall(b"GET /settings HTTP/1.1\r\nHost: x\r\n\r\n")
            status = f.readline().split()[1].decode()
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            codes[status] = codes.get(status, 0) + 1
    healthy = sum(health(port) is not None for _ in range(20))
    return f"rate limit (--rate-limit 100, {requests} requests back to back): {codes}; " \
           f"/health answered {healthy} of 20 meanwhile"


def start_serve(binary, dsn, workdir, extra):
    args = [binary, "serve", "--listen", "127.0.0.1:0", "--log-level", "warn"] + extra
    args += ["--dsn", dsn] if dsn else ["--data-dir", os.path.join(workdir, "pg")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "listening on http://" in line:
            port = int(line.rsplit(":", 1)[1].strip())
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, port
    raise SystemExit("serve did not start")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="build/src/cli/syncconfig")
    p.add_argument("--dsn", default="")
    p.add_argument("--flood", type=int, default=5000)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="syncconfig-abuse-") as tmp:
        os.chmod(tmp, 0o755)  # The embedded server runs as the postgres user when we are root.
        proc, port = start_serve(a.bin, a.dsn, tmp, [])
        try:
            print(slowloris(port), flush=True)
            print(half_sent(port), flush=True)
            print(flood(port, a.flood), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
        proc, port = start_serve(a.bin, a.dsn, tmp, ["--rate-limit", "100"])
        try:
            print(rate_limited(port), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
