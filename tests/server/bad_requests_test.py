"""The bad-request corpus: malformed and truncated JSON, wrong types, absurd
limits, unknown model and route, bodies over the limit, invalid UTF-8. Every
one must get a 4xx status with an OpenAI-style JSON error, and the server
must still answer a good request afterwards."""
import http.client
import json
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
]


class BadRequests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--max-body-kib", "256").__enter__()
        u = urlparse(cls.server.url)
        cls.host, cls.port = u.hostname, u.port

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

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

    def test_huge_body(self):
        big = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * (300 << 10)}]}).encode()
        status, data = self.send("POST", CHAT, big)
        self.assert_json_error(status, data, 413, "larger than", "huge body")
        status, _ = self.send("POST", CHAT, chat())
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
