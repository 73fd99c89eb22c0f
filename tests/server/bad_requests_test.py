"""The bad-request corpus: malformed and truncated JSON, wrong types, absurd
limits, unknown model and route, bodies over the limit, invalid UTF-8. Every
one must get a 4xx status with an OpenAI-style JSON error, and the server
must still answer a good request afterwards."""
import http.client
import json
import os
import shutil
import tempfile
import time
import unittest
from urllib.parse import urlparse

from lmlab_server import Server

CHAT = "/v1/chat/completions"
GOOD = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0}


def chat(**kw):
    return json.dumps({**GOOD, **kw}).encode()


# (name, method, path, raw body, expected status, text the message must contain)
CORPUS = [
    ("malformed JSON", "POST", CHAT, b'{"messages": [', 400, "not valid JSON"),
    ("truncated JSON", "POST", CHAT, chat()[:-7], 400, "not valid JSON"),
    ("not JSON", "POST", CHAT, b"hello", 400, "not valid JSON"),
    ("empty body", "POST", CHAT, b"", 400, "empty"),
    ("array body", "POST", CHAT, b"[1, 2]", 400, "expected a JSON object"),
    ("no messages", "POST", CHAT, b'{"max_tokens": 3}', 400, "messages"),
    ("messages a string", "POST", CHAT, chat(messages="hi"), 400, "messages"),
    ("empty messages", "POST", CHAT, chat(messages=[]), 400, "empty"),
    ("role missing", "POST", CHAT, chat(messages=[{"content": "x"}]), 400, "messages[0].role"),
    ("content a number", "POST", CHAT, chat(messages=[{"role": "user", "content": 3}]), 400, "content"),
    ("image content", "POST", CHAT, chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400,
     "image_url"),
    ("bad tool arguments", "POST", CHAT, chat(messages=[{"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]), 400, "arguments"),
    ("temperature a string", "POST", CHAT, chat(temperature="hot"), 400, "temperature"),
    ("temperature negative", "POST", CHAT, chat(temperature=-1), 400, "temperature"),
    ("temperature above OpenAI's 2", "POST", CHAT, chat(temperature=2.5), 400, "temperature"),
    ("min_p above one", "POST", CHAT, chat(min_p=1.5), 400, "min_p"),
    ("temperature NaN-ish", "POST", CHAT, b'{"messages": [{"role": "user", "content": "x"}], "temperature": 1e999}',
     400, ""),
    ("max_tokens negative", "POST", CHAT, chat(max_tokens=-1), 400, "max_tokens"),
    ("max_tokens zero", "POST", CHAT, chat(max_tokens=0), 400, "max_tokens"),
    ("max_tokens absurd", "POST", CHAT, chat(max_tokens=10**12), 400, "max_tokens"),
    ("max_tokens fractional", "POST", CHAT, chat(max_tokens=2.5), 400, "max_tokens"),
    ("max_completion_tokens a string", "POST", CHAT, chat(max_completion_tokens="5"), 400, "max_completion_tokens"),
    ("top_p zero", "POST", CHAT, chat(top_p=0), 400, "top_p"),
    ("top_p above one", "POST", CHAT, chat(top_p=1.5), 400, "top_p"),
    ("top_k negative", "POST", CHAT, chat(top_k=-3), 400, "top_k"),
    ("stop a number", "POST", CHAT, chat(stop=5), 400, "stop"),
    ("too many stops", "POST", CHAT, chat(stop=["a"] * 40), 400, "stop"),
    ("stream a string", "POST", CHAT, chat(stream="yes"), 400, "stream"),
    ("logprobs a string", "POST", CHAT, chat(logprobs="x"), 400, "logprobs"),
    ("top_logprobs too many", "POST", CHAT, chat(logprobs=True, top_logprobs=99), 400, "top_logprobs"),
    ("n above one", "POST", CHAT, chat(n=3), 400, "n"),
    ("seed a string", "POST", CHAT, chat(seed="abc"), 400, "seed"),
    ("unknown model", "POST", CHAT, chat(model="gpt-4o"), 404, "does not exist"),
    ("model a number", "POST", CHAT, chat(model=4), 400, "model"),
    ("json_object format", "POST", CHAT, chat(response_format={"type": "json_object"}), 400, "response_format"),
    ("tool_choice required", "POST", CHAT, chat(tool_choice="required"), 400, "tool_choice"),
    ("presence penalty", "POST", CHAT, chat(presence_penalty=1.0), 400, "presence_penalty"),
    ("template error", "POST", CHAT, chat(messages=[{"role": "assistant", "content": "x", "tool_calls": 5}]), 400,
     "tool_calls"),
    ("invalid UTF-8", "POST", CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "UTF-8"),
    ("prompt over the context", "POST", CHAT, chat(messages=[{"role": "user", "content": "word " * 9000}]), 400,
     "prompt has"),
    ("completion without prompt", "POST", "/v1/completions", b'{"max_tokens": 2}', 400, "prompt"),
    ("completion prompt of objects", "POST", "/v1/completions", b'{"prompt": [{"a": 1}]}', 400, "prompt"),
    ("completion negative ids", "POST", "/v1/completions", b'{"prompt": [1, -5]}', 400, "token"),
    ("completion ids past the vocabulary", "POST", "/v1/completions", b'{"prompt": [1, 99999999]}', 400,
     "vocabulary"),
    ("completion logprobs too many", "POST", "/v1/completions", b'{"prompt": "x", "logprobs": 9}', 400, "logprobs"),
    ("completion echo with stream", "POST", "/v1/completions", b'{"prompt": "x", "echo": true, "stream": true}', 400,
     "echo"),
    ("unknown route", "POST", "/v1/embeddings", b"{}", 404, "no route"),
    ("unknown path", "GET", "/v2/models", None, 404, "no route"),
    ("wrong method", "GET", CHAT, None, 404, ""),
    ("lab bad JSON", "POST", "/lab/predict", b"{", 400, "not valid JSON"),
    ("sweep values a string", "POST", "/lab/sweep", b'{"values": "1,2"}', 400, "values"),
    ("sweep two schedules", "POST", "/lab/sweep", b'{"values": [0], "log_grid": [1, 10, 3]}', 400, "one of"),
    ("sweep grid backwards", "POST", "/lab/sweep", b'{"log_grid": [100, 1, 3]}', 400, "lo < hi"),
    ("sweep grid too long", "POST", "/lab/sweep", b'{"log_grid": [1, 100000000, 200]}', 400, "at most 24"),
    ("sweep too many values", "POST", "/lab/sweep", json.dumps({"values": list(range(30))}).encode(), 400, "at most 24"),
    ("sweep bisection too fine", "POST", "/lab/sweep", b'{"bisect": [0, 100000000]}', 400, "at most 24"),
    ("sweep fractional shift", "POST", "/lab/sweep", b'{"values": [0.5]}', 400, "integer"),
    ("sweep unknown op", "POST", "/lab/sweep", b'{"op": "melt"}', 400, "melt"),
    ("sweep unknown criterion", "POST", "/lab/sweep", b'{"bisect": [0, 8], "until": "vibes"}', 400, "vibes"),
    ("sweep thresholds out of order", "POST", "/lab/sweep", b'{"values": [0], "healthy_kl": 2, "degraded_kl": 1}', 400,
     "thresholds"),
    ("sweep unknown tensor", "POST", "/lab/sweep", b'{"target": "nope.weight", "values": [0]}', 400, "nope"),
    ("sweep unknown job", "GET", "/lab/sweep/999", None, 404, "no sweep"),
    ("cancel an unknown sweep", "DELETE", "/lab/sweep/999", None, 404, "no sweep"),
    ("run without a name", "GET", "/lab/runs/log", None, 400, "run"),
    ("run path with ..", "GET", "/lab/runs/log?run=good/../../etc", None, 400, ".."),
    ("run path absolute", "GET", "/lab/runs/log?run=%2Fetc", None, 400, "absolute"),
    ("run symlink out", "GET", "/lab/runs/log?run=out", None, 400, "symbolic link"),
    ("run missing", "GET", "/lab/runs/log?run=nope", None, 404, "no run"),
    ("run without a log", "GET", "/lab/runs/log?run=empty", None, 404, "train_log.csv"),
]


class BadRequests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A runs folder with one good run, one without a log, and a link leading out of it.
        cls.runs = tempfile.mkdtemp(prefix="lmlab-runs-")
        os.makedirs(os.path.join(cls.runs, "good"))
        os.makedirs(os.path.join(cls.runs, "empty"))
        with open(os.path.join(cls.runs, "good", "train_log.csv"), "w") as f:
            f.write("iteration,train_loss,val_loss,learning_rate,it_per_sec,tokens_per_sec,trained_tokens,peak_memory_gb\n"
                    "0,,3.5,0,0,0,0,0\n1,3.25,,0.001,2,100,50,0.1\n")
        outside = tempfile.mkdtemp(prefix="lmlab-outside-")
        shutil.copy(os.path.join(cls.runs, "good", "train_log.csv"), outside)
        os.symlink(outside, os.path.join(cls.runs, "out"))
        cls.outside = outside
        cls.server = Server("--max-body-kib", "256", "--runs", cls.runs).__enter__()
        u = urlparse(cls.server.url)
        cls.host, cls.port = u.hostname, u.port

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0
        shutil.rmtree(cls.runs, ignore_errors=True)
        shutil.rmtree(cls.outside, ignore_errors=True)

    def send(self, method, path, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def assert_json_error(self, status, data, expected, needle, name):
        self.assertEqual(status, expected, f"{name}: {data[:300]!r}")
        err = json.loads(data)["error"]
        self.assertIsInstance(err["message"], str, name)
        self.assertTrue(err["message"], name)
        self.assertIn("type", err, name)
        self.assertIn(needle, err["message"] + str(err.get("param")), f"{name}: {err}")

    def test_corpus(self):
        for name, method, path, body, expected, needle in CORPUS:
            with self.subTest(name):
                status, data = self.send(method, path, body)
                self.assert_json_error(status, data, expected, needle, name)
        # Still serving, and correctly.
        status, data = self.send("POST", CHAT, chat())
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["usage"]["completion_tokens"], 2)

    def test_runs_list_only_what_lies_inside(self):
        status, data = self.send("GET", "/lab/runs", None)
        self.assertEqual(status, 200, data)
        runs = json.loads(data)["runs"]
        self.assertEqual([r["name"] for r in runs], ["good"])  # not the link out, not the folder without a log
        status, data = self.send("GET", "/lab/runs/log?run=good", None)
        self.assertEqual(status, 200, data)
        rows = json.loads(data)["rows"]
        self.assertEqual([(r["iteration"], r["train_loss"], r["val_loss"]) for r in rows], [(0, None, 3.5), (1, 3.25, None)])

    def test_cancel_a_running_sweep(self):
        """DELETE stops a sweep before its next point; the served model is left
        as it was, and the next sweep may start."""
        _, data = self.send("GET", "/lab/surgery", None)
        before = json.loads(data)["hash"]
        sweep = {"values": list(range(12)), "prompts": ["Hi"], "max_tokens": 1,
                 "text": "The cat sat on the mat. The dog lay by the door. " * 4}
        status, data = self.send("POST", "/lab/sweep", json.dumps(sweep).encode())
        self.assertEqual(status, 202, data)
        job = json.loads(data)["id"]

        def poll():
            return json.loads(self.send("GET", f"/lab/sweep/{job}", None)[1])

        def ended():
            for _ in range(600):
                state = poll()
                if state["state"] not in ("queued", "running"):
                    return state
                time.sleep(0.1)
            return state

        while poll()["done"] < 1:
            time.sleep(0.05)
        status, data = self.send("DELETE", f"/lab/sweep/{job}", None)
        self.assertEqual(status, 202, data)
        state = ended()
        self.assertEqual(state["state"], "cancelled", state)
        self.assertIn("cancelled", state["error"])
        self.assertLess(state["done"], 12)
        self.assertNotIn("report", state)
        _, data = self.send("GET", "/lab/surgery", None)
        self.assertEqual(json.loads(data)["hash"], before)
        # Cancelling an ended sweep changes nothing.
        status, data = self.send("DELETE", f"/lab/sweep/{job}", None)
        self.assertEqual((status, json.loads(data)["state"]), (202, "cancelled"))
        status, data = self.send("POST", "/lab/sweep", json.dumps({**sweep, "values": [0]}).encode())
        self.assertEqual(status, 202, data)
        job = json.loads(data)["id"]
        state = ended()
        self.assertEqual(state["state"], "done", state)
        self.assertTrue(state["report"]["served_model_unchanged"])

    def test_huge_body(self):
        big = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * (300 << 10)}]}).encode()
        status, data = self.send("POST", CHAT, big)
        self.assert_json_error(status, data, 413, "larger than", "huge body")
        status, _ = self.send("POST", CHAT, chat())
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
