"""Starts `lmlab serve` on a free port of 127.0.0.1 for a test and stops it
with SIGTERM, checking it exits cleanly. Paths come from the environment
ctest sets (LMLAB_BINARY, LMLAB_SOURCE_DIR)."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

BINARY = os.environ.get("LMLAB_BINARY", "build/lmlab")
SOURCE = os.environ.get("LMLAB_SOURCE_DIR", ".")


class Server:
    def __init__(self, *args, env=None):
        self.args = list(args)
        self.env = env
        self.proc = None
        self.url = None

    def __enter__(self):
        cmd = [BINARY, "serve", "--port", "0", "--quiet", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(self.env or {})})
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise RuntimeError(f"lmlab serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split(" on ")[1].split(" ")[0]
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("lmlab serve did not stop within %d s of SIGTERM" % timeout)
        return self.proc.returncode

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON or text) of one request; never raises on HTTP errors."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


def lmlab(*args):
    """stdout of one lmlab command (which must succeed)."""
    out = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"lmlab {' '.join(args)} failed: {out.stderr}")
    return out.stdout
