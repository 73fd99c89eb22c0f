"""`lmlab tokenize --messages` against transformers' apply_chat_template on
real templates: the rendered text and the token ids must be identical for
conversations with system, user and assistant turns, tool calls and tool
results, tools, and with and without the generation prompt. Tool-call
arguments arrive as JSON text (the OpenAI format) and are parsed into
objects before rendering, as lmlab and mlx-lm's server do."""
import copy
import functools
import json
import lzma
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from transformers import AutoTokenizer

BINARY = os.environ.get("LMLAB_BINARY", "build/lmlab")
SHARED = Path(os.environ.get("LMLAB_SOURCE_DIR", ".")).resolve().parent / "shared" / "tokenizers"

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["C", "F"]}},
                   "required": ["city"]}}}]

CONVERSATIONS = {
    "plain": {"messages": [{"role": "system", "content": "You are brief."},
                           {"role": "user", "content": "Hi there!"},
                           {"role": "assistant", "content": "Hello."},
                           {"role": "user", "content": [{"type": "text", "text": "What is "},
                                                        {"type": "text", "text": "2+2?"}]}]},
    "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"C\"}"}}]},
                           {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"},
                           {"role": "user", "content": "Thanks! And in Rome?"}],
              "tools": TOOLS},
}


@functools.lru_cache(maxsize=None)
def hf_tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder)


def unpacked(name):
    """A folder with the shared tokenizer NAME (its tokenizer.json is stored xz-compressed)."""
    out = Path(tempfile.mkdtemp(prefix=f"lmlab-tok-{name}-"))
    with lzma.open(SHARED / name / "tokenizer.json.xz", "rb") as f:
        (out / "tokenizer.json").write_bytes(f.read())
    shutil.copy(SHARED / name / "tokenizer_config.json", out)
    return out


def as_template_input(conv):
    """What lmlab renders: null content as "", text parts joined, arguments parsed."""
    msgs = copy.deepcopy(conv["messages"])
    for m in msgs:
        c = m.get("content")
        if c is None:
            m["content"] = ""
        elif isinstance(c, list):
            m["content"] = "".join(p["text"] for p in c)
        for call in m.get("tool_calls") or []:
            if isinstance(call["function"].get("arguments"), str):
                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return msgs


class MessagesOracle(unittest.TestCase):
    def check(self, tokenizer_dir, name, conv, generation_prompt):
        tok = hf_tokenizer(str(tokenizer_dir))
        text = tok.apply_chat_template(as_template_input(conv), tools=conv.get("tools"), tokenize=False,
                                       add_generation_prompt=generation_prompt)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(conv, f)
        args = [BINARY, "tokenize", "--tokenizer", str(tokenizer_dir), "--messages", f.name, "--json"]
        if not generation_prompt:
            args.append("--no-generation-prompt")
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
        os.unlink(f.name)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        self.assertEqual(got["text"], text, name)
        self.assertEqual(got["ids"], ids, name)

    def test_templates(self):
        for tokenizer in ("qwen3", "llama3_1"):
            folder = unpacked(tokenizer)
            for name, conv in CONVERSATIONS.items():
                for gen in (True, False):
                    with self.subTest(tokenizer=tokenizer, conversation=name, generation_prompt=gen):
                        self.check(folder, name, conv, gen)
            shutil.rmtree(folder)

    def test_bad_file_is_one_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"messages": [{"role": "user", "content": 7}]}')
        out = subprocess.run([BINARY, "tokenize", "--messages", f.name], capture_output=True, text=True, timeout=60)
        os.unlink(f.name)
        self.assertNotEqual(out.returncode, 0)
        self.assertEqual(out.stderr.count("\n"), 1, out.stderr)
        self.assertIn("messages[0].content", out.stderr)


if __name__ == "__main__":
    unittest.main()
