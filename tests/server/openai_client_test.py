"""The real `openai` Python client against `lmlab serve` on the default model:
chat and completions, streaming and not, logprobs, stop, max_tokens, seeds,
the shared prompt cache, and the API key. Greedy answers are compared with
`lmlab generate` on the same prompt (the server must answer exactly as the
CLI does)."""
import json
import math
import unittest

import openai

from lmlab_server import Server, lmlab

QUESTION = "What is the capital of France?"


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server().__enter__()
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)
        cls.model = cls.client.models.list().data[0].id

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def chat(self, **kw):
        args = {"model": self.model, "messages": [{"role": "user", "content": QUESTION}], "temperature": 0,
                "max_tokens": 24, **kw}
        return self.client.chat.completions.create(**args)

    def test_models_lists_the_served_model(self):
        models = self.client.models.list().data
        self.assertEqual(len(models), 1)
        self.assertTrue(models[0].id.startswith("SmolLM2"))

    def test_greedy_chat_equals_lmlab_generate(self):
        cli = json.loads(lmlab("generate", "--json", "--temp", "0", "--max-tokens", "24", "-p", QUESTION))
        r = self.chat()
        self.assertEqual(r.choices[0].message.content, cli["text"])
        self.assertEqual(r.usage.prompt_tokens, len(cli["prompt_tokens"]))
        self.assertEqual(r.usage.completion_tokens, len(cli["tokens"]))
        self.assertEqual(r.choices[0].finish_reason, cli["finish_reason"])
        self.assertIn("Paris", r.choices[0].message.content)

    def test_streamed_chat_equals_the_whole_answer(self):
        whole = self.chat().choices[0].message.content
        chunks = list(self.chat(stream=True, stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole)
        finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(len(finals), 1)
        self.assertIsNotNone(chunks[-1].usage)
        self.assertEqual(chunks[-1].choices, [])
        self.assertGreater(chunks[-1].usage.completion_tokens, 0)

    def test_greedy_completion_equals_lmlab_generate(self):
        prompt = "The capital of France is"
        cli = json.loads(lmlab("generate", "--json", "--no-chat-template", "--temp", "0", "--max-tokens", "12",
                               "-p", prompt))
        r = self.client.completions.create(model=self.model, prompt=prompt, temperature=0, max_tokens=12)
        self.assertEqual(r.choices[0].text, cli["text"])
        self.assertEqual(r.usage.prompt_tokens, len(cli["prompt_tokens"]))
        streamed = "".join(c.choices[0].text for c in self.client.completions.create(
            model=self.model, prompt=prompt, temperature=0, max_tokens=12, stream=True) if c.choices)
        self.assertEqual(streamed, cli["text"])
        echoed = self.client.completions.create(model=self.model, prompt=prompt, temperature=0, max_tokens=12,
                                                echo=True)
        self.assertEqual(echoed.choices[0].text, prompt + cli["text"])
        by_ids = self.client.completions.create(model=self.model, prompt=cli["prompt_tokens"], temperature=0,
                                                max_tokens=12)
        self.assertEqual(by_ids.choices[0].text, cli["text"])

    def test_chat_logprobs(self):
        self.assertIsNone(self.chat(max_tokens=4).choices[0].logprobs)  # only when asked for
        r = self.chat(logprobs=True, top_logprobs=3, max_tokens=8)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        for t in content:
            self.assertEqual(len(t.top_logprobs), 3)
            self.assertLessEqual(t.logprob, 0)
            # Greedy picks the most likely token; the top list is sorted.
            self.assertEqual(t.top_logprobs[0].token, t.token)
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob, places=5)
            lps = [x.logprob for x in t.top_logprobs]
            self.assertEqual(lps, sorted(lps, reverse=True))
            self.assertLessEqual(sum(math.exp(x) for x in lps), 1.0 + 1e-4)
            self.assertEqual(bytes(t.bytes).decode(), t.token)
        streamed = [c.choices[0].logprobs.content[0] for c in self.chat(logprobs=True, top_logprobs=3, max_tokens=8,
                                                                         stream=True)
                    if c.choices and c.choices[0].logprobs]
        self.assertEqual([t.token for t in streamed], [t.token for t in content])
        for a, b in zip(streamed, content):
            self.assertAlmostEqual(a.logprob, b.logprob, places=5)

    def test_completion_logprobs_legacy_shape(self):
        r = self.client.completions.create(model=self.model, prompt="One, two, three,", temperature=0,
                                           max_tokens=4, logprobs=2)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 4)
        self.assertEqual("".join(lp.tokens), r.choices[0].text)
        self.assertEqual(lp.text_offset[0], 0)
        for tok, top in zip(lp.tokens, lp.top_logprobs):
            self.assertEqual(len(top), 2)
            self.assertIn(tok, top)

    def test_stop_and_max_tokens(self):
        whole = self.chat(max_tokens=24).choices[0].message.content
        stop = whole[6:10]
        r = self.chat(stop=[stop])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].message.content, whole[: whole.index(stop)])
        r = self.chat(max_tokens=3)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 3)
        r = self.chat(max_completion_tokens=2)
        self.assertEqual(r.usage.completion_tokens, 2)

    def test_seed_repeats_sampling(self):
        def sample(seed):
            return self.chat(temperature=1.0, top_p=0.95, seed=seed, max_tokens=16).choices[0].message.content
        self.assertEqual(sample(7), sample(7))
        self.assertGreater(len({sample(s) for s in (1, 2, 3, 4)}), 1)

    def test_next_turn_reuses_the_prompt_cache(self):
        messages = [{"role": "system", "content": "You answer in one sentence."},
                    {"role": "user", "content": "Name a large animal."}]
        first = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                    max_tokens=16)
        messages += [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "Where does it live?"}]
        second = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                     max_tokens=16)
        cached = second.usage.prompt_tokens_details.cached_tokens
        # The first prompt and the reply come from the cache (the reply's last
        # token may not: a reply cut by max_tokens never ran it).
        self.assertGreaterEqual(cached + 1, first.usage.prompt_tokens + first.usage.completion_tokens - 1)
        with Server("--prompt-cache-mib", "0") as cold_server:
            cold = openai.OpenAI(base_url=cold_server.url + "/v1", api_key="x").chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=16)
        self.assertEqual(cold.usage.prompt_tokens_details.cached_tokens, 0)
        self.assertEqual(second.choices[0].message.content, cold.choices[0].message.content)

    def test_tools_are_accepted(self):
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        messages = [{"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"}]
        r = self.client.chat.completions.create(model=self.model, messages=messages, tools=tools, temperature=0,
                                                max_tokens=8)
        self.assertGreater(r.usage.prompt_tokens, 20)


class ApiKey(unittest.TestCase):
    def test_key_is_required(self):
        with Server("--api-key", "s3cret") as s:
            status, body = s.request("GET", "/v1/models")
            self.assertEqual(status, 401)
            self.assertEqual(body["error"]["code"], "invalid_api_key")
            status, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
            self.assertEqual(status, 401)
            ok = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret").models.list()
            self.assertEqual(len(ok.data), 1)
            with self.assertRaises(openai.AuthenticationError):
                openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0).models.list()


if __name__ == "__main__":
    unittest.main()
