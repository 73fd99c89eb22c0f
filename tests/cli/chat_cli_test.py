"""`lmlab chat` as a user drives it (here through a pipe): turns stream
replies, /stats reports the cached prefix, /save writes the conversation and
its KV cache, and a second process that /loads it answers the next turn with
the prefill of the saved part skipped and the same reply as the first
process. Bad commands print one error line and the loop goes on."""
import os
import re
import subprocess
import tempfile
import unittest

BINARY = os.environ.get("LMLAB_BINARY", "build/lmlab")


def chat(lines, *args):
    out = subprocess.run([BINARY, "chat", "--max-tokens", "24", *args], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout, out.stderr


def cached(stats_line):
    return int(re.search(r"\((\d+) from the cache", stats_line).group(1))


class ChatCli(unittest.TestCase):
    def test_save_load_continues_without_the_prefill(self):
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "conv.cache")
            code, out1, err = chat(["Name a colour.", f"/save {f}", "Another one?", "/stats"])
            self.assertEqual(code, 0, err)
            self.assertIn(f"saved {f}", out1)
            stats1 = [l for l in out1.splitlines() if l.startswith("last turn:")][0]
            self.assertGreater(cached(stats1), 20)
            code, out2, err = chat([f"/load {f}", "Another one?", "/stats"])
            self.assertEqual(code, 0, err)
            self.assertIn("loaded", out2)
            stats2 = [l for l in out2.splitlines() if l.startswith("last turn:")][0]
            self.assertEqual(cached(stats2), cached(stats1))
            # The reply to "Another one?" (the line before /stats' output) is the same in both processes.
            def last_reply(out):
                lines = out.splitlines()
                return lines[[i for i, l in enumerate(lines) if l.startswith("last turn:")][0] - 1]
            self.assertEqual(last_reply(out2), last_reply(out1))

    def test_bad_commands_keep_the_loop(self):
        code, out, err = chat(["/load /nonexistent/file", "/save", "/bogus", "/help", "Hi.", "/reset", "/stats"])
        self.assertEqual(code, 0, err)
        self.assertEqual(err.count("error: "), 2, err)
        self.assertIn("no such file", err)
        self.assertIn("unknown command /bogus", out)
        self.assertIn("/system TEXT", out)
        self.assertIn("conversation reset", out)

    def test_other_safetensors_are_refused(self):
        import numpy as np
        from safetensors.numpy import save_file
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "c.safetensors")
            save_file({"x": np.zeros(2, dtype=np.float32)}, f)
            code, out, err = chat([f"/load {f}", "/quit"])
            self.assertEqual(code, 0)
            self.assertIn("not a prompt cache", err)


if __name__ == "__main__":
    unittest.main()
