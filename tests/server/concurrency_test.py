"""Many clients at once: 16 concurrent streaming chats, a quarter of them
hanging up after a few chunks, decoded together in batches. Every other stream
must complete with exactly the greedy answer its prompt gets alone, the hung-up generations must stop
early, memory must not grow from one round to the next, the bounded queue
must refuse with 503 JSON when full, and SIGTERM must let a running stream
finish before the server exits 0."""
import http.client
import json
import signal
import threading
import time
import unittest
from urllib.parse import urlparse

from lmlab_server import Server

PROMPTS = ["Write a poem about the colour blue.", "Write a poem about a fruit.", "Describe a long river.",
           "Tell a story about an old tree."]
MAX_TOKENS = 24


def body(prompt, stream=True, max_tokens=MAX_TOKENS):
    return json.dumps({"messages": [{"role": "user", "content": prompt}], "temperature": 0,
                       "max_tokens": max_tokens, "stream": stream}).encode()


def stream_chat(url, prompt, hang_up_after=None, max_tokens=MAX_TOKENS):
    """The streamed text, or None when hanging up after `hang_up_after` chunks."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("POST", "/v1/chat/completions", body=body(prompt, max_tokens=max_tokens),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    text, chunks, done = "", 0, False
    while True:
        line = r.fp.readline()
        if not line:
            break
        line = line.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            break
        chunk = json.loads(line[6:])
        assert "error" not in chunk, chunk
        for c in chunk["choices"]:
            text += c["delta"].get("content") or ""
        chunks += 1
        if hang_up_after is not None and chunks >= hang_up_after:
            conn.sock.close()
            conn.close()
            return None
    conn.close()
    assert done, "the stream ended without [DONE]"
    return text


class Concurrency(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--parallel", "16").__enter__()
        cls.expected = {p: stream_chat(cls.server.url, p) for p in PROMPTS}
        cls.full_tokens = {}
        for p in PROMPTS:
            status, r = cls.server.request("POST", "/v1/chat/completions", json.loads(body(p, stream=False)))
            assert status == 200, r
            cls.full_tokens[p] = r["usage"]["completion_tokens"]

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def round(self):
        results, errors = {}, []

        def client(i):
            try:
                hang_up = 3 if i % 4 == 3 else None
                results[i] = stream_chat(self.server.url, PROMPTS[i % 4], hang_up)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"client {i}: {e!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual(errors, [])
        for i in range(16):
            if i % 4 == 3:
                self.assertIsNone(results[i])
            else:
                self.assertEqual(results[i], self.expected[PROMPTS[i % 4]], f"client {i}")

    def health(self):
        return self.server.request("GET", "/health")[1]

    def test_sixteen_streams_with_hang_ups(self):
        before = self.health()
        self.round()
        rss1 = self.server.rss_mib()
        self.round()
        self.round()
        rss3 = self.server.rss_mib()
        # Let the engine notice the last hang-ups.
        for _ in range(50):
            h = self.health()
            if h["active"] == 0 and h["queued"] == 0:
                break
            time.sleep(0.1)
        after = self.health()
        self.assertEqual(after["active"], 0)
        # The streams were decoded as batches (continuous batching), and each
        # batched answer above equals the one its prompt gets alone.
        self.assertGreater(after["batched_rounds"] - before["batched_rounds"], 3 * MAX_TOKENS // 2)
        # Every hung-up stream is cancelled unless its answer was complete before
        # the server's next write noticed (possible on a starved CPU); all 48 end.
        cancelled = after["cancelled"] - before["cancelled"]
        self.assertGreaterEqual(cancelled, 9)
        self.assertEqual(cancelled + after["completed"] - before["completed"], 48)
        # The 12 hung-up generations stopped early: the completed ones made
        # their full answers, the others together well under theirs.
        full = 3 * sum(self.full_tokens[PROMPTS[i % 4]] for i in range(16))
        hung = 3 * sum(self.full_tokens[PROMPTS[i % 4]] for i in range(16) if i % 4 == 3)
        made = after["generated_tokens"] - before["generated_tokens"]
        self.assertLess(made, full - hung // 2, f"{made} tokens generated; full answers would be {full}")
        self.assertLess(rss3 - rss1, 40, f"RSS grew from {rss1:.0f} to {rss3:.0f} MiB")


class Queue(unittest.TestCase):
    def test_full_queue_is_refused_with_503(self):
        with Server("--parallel", "1", "--queue", "1") as s:
            statuses, lock = [], threading.Lock()

            def client():
                st, data = s.request("POST", "/v1/chat/completions",
                                     {"messages": [{"role": "user", "content": "Count to twenty."}],
                                      "max_tokens": 40, "temperature": 0})
                with lock:
                    statuses.append((st, data))

            threads = [threading.Thread(target=client) for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            codes = sorted(st for st, _ in statuses)
            self.assertIn(200, codes)
            self.assertIn(503, codes)
            for st, data in statuses:
                if st == 503:
                    self.assertEqual(data["error"]["code"], "server_busy")
            self.assertEqual(s.request("GET", "/health")[0], 200)


class Shutdown(unittest.TestCase):
    def test_sigterm_lets_a_running_stream_finish(self):
        s = Server().__enter__()
        out = {}

        def client():
            out["text"] = stream_chat(s.url, "Write a long story about a ship.", max_tokens=64)

        t = threading.Thread(target=client)
        t.start()
        time.sleep(1.0)
        s.proc.send_signal(signal.SIGTERM)
        t.join(120)
        self.assertTrue(out.get("text"), "the running stream did not complete")
        self.assertEqual(s.proc.wait(30), 0)
        self.assertIn("stopped", s.proc.stdout.read())


if __name__ == "__main__":
    unittest.main()
