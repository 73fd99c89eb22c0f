"""Serving benchmark: lmlab serve against llama.cpp's server (llama-cpp-python)
and mlx_lm.server on the same model and machine, through the same streaming
chat-completion client.

For 1, 4 and 16 concurrent streams (each a different prompt, greedy, 64
tokens): time to first token (median over streams), per-stream generation
speed (mean over streams of tokens after the first / time after the first)
and total throughput (all tokens / wall time). Then the prompt cache on a
multi-turn conversation with a long system message: time to first token of
each turn, lmlab with its cache and with --prompt-cache-mib 0, and the anchors.

Pairs compared on identical weights: lmlab and llama.cpp on the default Q4_1
GGUF; lmlab and mlx-lm on the 4-bit MLX copy made by tests/golden/model_golden.py.
Tokens are counted by re-tokenizing each answer with the model's tokenizer, so
every server is measured the same way.

The anchors' server extras (fastapi, uvicorn, sse-starlette, starlette-context,
pydantic-settings) are installed into .deps/bench-extras on first use, outside
the test environment.

lmlab runs twice on the GGUF: as served (streams decoded together, one
forward pass per round) and with --no-batch (streams decoded one after another).

Usage: .deps/py/bin/python bench/serve_bench.py [--streams 1 4 16] [--tokens 64] [--lmlab-only] [--write]
"""
import argparse
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EXTRAS = ROOT / ".deps" / "bench-extras"
MLX_DIR = ROOT / ".deps" / "fixtures" / "model" / "smollm2-mlx-q4"
SUBJECTS = ["a lighthouse", "a dragon", "the sea", "a robot", "a garden", "a city at night", "a lost key",
            "a mountain", "a violin", "a comet", "a library", "a fox", "a storm", "a train", "a clock", "a bridge"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(url, proc, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.args}")
        try:
            u = urlparse(url)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", "/v1/models")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready: {proc.args}")


class Server:
    def __init__(self, name, cmd, env=None):
        self.name, self.port = name, free_port()
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **(self.env or {})})
        wait_ready(self.url, self.proc)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def lmlab_server(model, *extra, name="lmlab"):
    return Server(name, [str(ROOT / "build/lmlab"), "serve", "--model", model, "--port", "{port}", "--quiet",
                         "--parallel", "16", *extra])


def llamacpp_server(model, threads):
    return Server("llama.cpp", [PY, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                                "--port", "{port}", "--n_ctx", "4096", "--n_threads", str(threads),
                                "--n_threads_batch", str(threads), "--verbose", "False",
                                # queue concurrent requests instead of cutting the running one short
                                "--interrupt_requests", "False"],
                  env={"PYTHONPATH": str(EXTRAS)})


def mlxlm_server(model_dir):
    return Server("mlx-lm", [PY, "-m", "mlx_lm.server", "--model", str(model_dir), "--host", "127.0.0.1",
                             "--port", "{port}"])


def stream(url, messages, max_tokens):
    """(seconds to the first content, seconds to the end, answer text)."""
    u = urlparse(url)
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"{url}: HTTP {r.status} {r.read()[:300]!r}")
    first, text = None, ""
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for ch in chunk.get("choices", []):
            piece = (ch.get("delta") or {}).get("content") or ""
            if piece and first is None:
                first = time.perf_counter() - t0
            text += piece
    c.close()
    return first or 0.0, time.perf_counter() - t0, text


def run_streams(server, n, max_tokens, count_tokens):
    results, threads = [None] * n, []
    start = time.perf_counter()

    def client(i):
        msgs = [{"role": "user", "content": f"Write a short story about {SUBJECTS[i % len(SUBJECTS)]}."}]
        results[i] = stream(server.url, msgs, max_tokens)

    for i in range(n):
        threads.append(threading.Thread(target=client, args=(i,)))
        threads[-1].start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = [count_tokens(text) for _, _, text in results]
    per_stream = [(k - 1) / (end - first) for (first, end, _), k in zip(results, tokens) if k > 1 and end > first]
    return {"streams": n, "ttft_median": statistics.median(r[0] for r in results),
            "per_stream_tps": statistics.mean(per_stream) if per_stream else 0.0,
            "total_tps": sum(tokens) / wall, "tokens": sum(tokens)}


SYSTEM = ("You are a careful assistant for a museum of maritime history. " * 24).strip()
TURNS = ["What is a lighthouse for?", "Who kept them?", "Name a famous one.", "Why are they striped?"]


def conversation(server, max_tokens):
    msgs, ttfts = [{"role": "system", "content": SYSTEM}], []
    for q in TURNS:
        msgs.append({"role": "user", "content": q})
        first, _, text = stream(server.url, msgs, max_tokens)
        ttfts.append(first)
        msgs.append({"role": "assistant", "content": text})
    return ttfts


def ensure_extras():
    if not (EXTRAS / "fastapi").exists():
        subprocess.run([PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(EXTRAS),
                        "fastapi", "uvicorn", "sse-starlette", "starlette-context", "pydantic-settings"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmarks.md")
    ap.add_argument("--cache-only", action="store_true", help="only the prompt-cache conversation, lmlab with and without")
    ap.add_argument("--lmlab-only", action="store_true", help="lmlab with and without batched decoding, no anchors")
    args = ap.parse_args()
    ensure_extras()
    gguf = subprocess.run([str(ROOT / "scripts/fetch-model.sh")], capture_output=True, text=True,
                          check=True).stdout.strip()
    from llama_cpp import Llama
    vocab = Llama(model_path=gguf, vocab_only=True, verbose=False)
    count = lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    unbatched = lmlab_server(gguf, "--no-batch", name="lmlab, --no-batch")
    pairs = [("Q4_1 GGUF", [lmlab_server(gguf), unbatched, llamacpp_server(gguf, args.threads)]),
             ("MLX 4-bit", [lmlab_server(str(MLX_DIR)), mlxlm_server(MLX_DIR)])]
    rows, convo = [], []
    if args.lmlab_only:
        pairs = [("Q4_1 GGUF", [lmlab_server(gguf), unbatched])]
    if args.cache_only:
        pairs = [("Q4_1 GGUF", [lmlab_server(gguf)])]
        args.streams = []
    for label, servers in pairs:
        for server in servers:
            with server:
                stream(server.url, [{"role": "user", "content": "Hi"}], 8)  # warm-up
                for n in args.streams:
                    r = run_streams(server, n, args.tokens, count)
                    r.update(model=label, server=server.name)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
                convo.append((label, server.name, conversation(server, 32)))
                print(label, server.name, convo[-1][2], flush=True)
    with lmlab_server(gguf, "--prompt-cache-mib", "0") as cold:
        stream(cold.url, [{"role": "user", "content": "Hi"}], 8)
        convo.append(("Q4_1 GGUF", "lmlab, cache off", conversation(cold, 32)))
        print(convo[-1], flush=True)
    report = render(rows, convo, args)
    print(report)
    if args.write:
        write_docs(report)


def render(rows, convo, args):
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
             f"{args.tokens} greedy tokens per stream; llama.cpp with {args.threads} threads; "
             f"command: `.deps/py/bin/python bench/serve_bench.py{' --write' if args.write else ''}`.", "",
             "| model | streams | server | TTFT median (s) | per-stream tok/s | total tok/s | lmlab / anchor (total) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next((x for x in rows if x["model"] == r["model"] and x["streams"] == r["streams"]
                     and x["server"] == "lmlab"), None)
        ratio = f"{base['total_tps'] / r['total_tps']:.2f}x" if base and r["server"] != "lmlab" and r["total_tps"] else ""
        lines.append(f"| {r['model']} | {r['streams']} | {r['server']} | {r['ttft_median']:.3f} | "
                     f"{r['per_stream_tps']:.1f} | {r['total_tps']:.1f} | {ratio} |")
    lines += ["", "Prompt cache: time to first token (s) of each turn of a 4-turn conversation "
              f"with a {len(SYSTEM.split())}-word system message.", "",
              "| model | server | turn 1 | turn 2 | turn 3 | turn 4 |", "| --- | --- | --- | --- | --- | --- |"]
    for label, name, t in convo:
        lines.append(f"| {label} | {name} | " + " | ".join(f"{x:.3f}" for x in t) + " |")
    return "\n".join(lines)


def write_docs(report):
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    block = f"<!-- bench:serve -->\n{report}\n<!-- /bench:serve -->"
    if "<!-- bench:serve -->" in text:
        text = re.sub(r"<!-- bench:serve -->.*<!-- /bench:serve -->", lambda _: block, text, flags=re.S)
    else:
        text += "\n## Serving: lmlab serve, llama.cpp's server, mlx_lm.server\n\n" + block + "\n"
    doc.write_text(text)


if __name__ == "__main__":
    main()
