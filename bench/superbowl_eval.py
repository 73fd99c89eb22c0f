"""Super Bowl LIX acceptance metric: greedy answers to the 44 distinct
held-out questions of ../shared/data/superbowl/valid.jsonl, each scored on the
one fact its reference answers share (the regular expressions below, written
from valid.jsonl: a number, a name, both teams). Reports the share of
questions answered with their fact, for all 44, for the 28 whose question text
is not in train.jsonl and for the 16 that are, plus a probe outside the data
("Who won Super Bowl LIX, and what was the score?": names the Eagles and 40-22).

  superbowl_eval.py NAME lmlab BINARY [model options...]   # lmlab generate
  superbowl_eval.py NAME llama.cpp FILE.gguf               # llama-cpp-python, the file's chat template
Writes NAME.json (answers and scores) in the current folder and prints a summary line."""
import json
import re
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "superbowl"
MAX_TOKENS = 48
PROBE = "Who won Super Bowl LIX, and what was the score?"

BOTH_TEAMS = r"(?=.*Eagles)(?=.*Chiefs)"
FACTS = {
    "How many yards did Patrick Mahomes throw for?": r"\b257\b",
    "How many touchdowns did Patrick Mahomes throw?": r"\b(three|3)\b",
    "Who was the umpire for latest super-bowl?": r"Mike Morton",
    "Who was the head coach of the Kansas City Chiefs in latest super-bowl?": r"Andy Reid",
    "Who were some key players for the Kansas City Chiefs in latest super-bowl?": r"Mahomes|Kelce|Worthy|Hunt",
    "What was the record of the Kansas City Chiefs going into latest super-bowl?": r"15-2",
    "Who was the head coach of the Philadelphia Eagles in latest super-bowl?": r"Sirianni",
    "Who were some key players for the Philadelphia Eagles in latest super-bowl?": r"Hurts|Barkley|A\. ?J\. Brown|Goedert",
    "What was the record of the Philadelphia Eagles going into latest super-bowl?": r"14-3|14 wins",
    "What record did Jalen Hurts set in latest super-bowl?": r"\b72\b",
    "Who provided commentary for the Fox broadcast of latest super-bowl?": r"Burkhardt|Tom Brady",
    "Who was the referee for latest super-bowl?": r"Torbert",
    "What was the final score of latest super-bowl?": r"40\s*[-–]\s*22",
    "Who was named the MVP of latest super-bowl?": r"Hurts",
    "Who performed the national anthem before latest super-bowl?": r"Batiste",
    "Who headlined the halftime show at latest super-bowl?": r"Kendrick Lamar",
    "Who were the surprise performers before latest super-bowl?": r"Lady Gaga|Harry Connick",
    "Where was latest super-bowl played?": r"Superdome|New Orleans",
    "Which teams competed in latest super-bowl?": BOTH_TEAMS,
    "How many points did the Eagles score in the first half of latest super-bowl?": r"\b24\b",
    "Who was named the Super Bowl MVP?": r"Hurts",
    "How many rushing yards did Jalen Hurts have in latest super-bowl?": r"\b72\b",
    "Who performed the national anthem at latest super-bowl?": r"Batiste",
    "How many interceptions did Patrick Mahomes throw in latest super-bowl?": r"\b(two|2)\b",
    "Which NFL championship game is latest super-bowl?": r"\bLIX\b|59th",
    "When and where was latest super-bowl played?": r"(?=.*February 9)(?=.*(New Orleans|Superdome))",
    "Which two teams competed in latest super-bowl?": BOTH_TEAMS,
    "Who were the key players for the Kansas City Chiefs in latest super-bowl?": r"Mahomes|Kelce|Worthy|Hunt",
    "Who won the Super Bowl MVP award in latest super-bowl?": r"Hurts",
    "What was the record for the first-half yardage of the Kansas City Chiefs in latest super-bowl?": r"\b23\b",
    "Which broadcaster provided the national radio broadcast for latest super-bowl?": r"Westwood One",
    "Who headlined the halftime show for latest super-bowl?": r"Kendrick Lamar",
    "Who performed the national anthem for latest super-bowl?": r"Batiste",
    "How many countries broadcasted latest super-bowl?": r"\b150\b",
    "Which teams played in latest super-bowl?": BOTH_TEAMS,
    "How many Super Bowl championships did the Philadelphia Eagles win before latest super-bowl?": r"\bLII\b|2018|\bonce\b",
    "What was the record of the Kansas City Chiefs entering latest super-bowl?": r"15-2",
    "Who was named MVP of latest super-bowl?": r"Hurts",
    "How many yards did the Chiefs gain in the first half of latest super-bowl?": r"\b23\b",
    "Who headlined the halftime show of latest super-bowl?": r"Kendrick Lamar",
    "Who broadcasted the game in the United States?": r"\bFox\b",
    "Who performed the national anthem before the game?": r"Batiste",
    "What was the first-half performance of the Kansas City Chiefs?": r"\b23\b",
    "What was the record of the Philadelphia Eagles in Super Bowl LII?": r"Patriots|41\s*[-–]\s*33",
}
PROBE_FACT = r"(?=.*Eagles)(?=.*40\s*[-–]\s*22)"


def questions():
    valid = [json.loads(line)["prompt"] for line in open(DATA / "valid.jsonl")]
    train = {json.loads(line)["prompt"] for line in open(DATA / "train.jsonl")}
    distinct = list(dict.fromkeys(valid))
    assert set(distinct) == set(FACTS), set(distinct) ^ set(FACTS)
    return distinct, train


def lmlab_answer(binary, model_args, prompt):
    r = subprocess.run([binary, "generate", *model_args, "--prompt", prompt, "--max-tokens", str(MAX_TOKENS),
                        "--temp", "0", "--json"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"lmlab generate failed: {r.stderr}")
    return json.loads(r.stdout)["text"]


def llama_cpp_answerer(path):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=512, n_threads=1, verbose=False)  # one thread: ggml's spinning pool slows down badly on a busy machine

    def answer(prompt):
        out = llm.create_chat_completion([{"role": "user", "content": prompt}], temperature=0.0, top_k=1,
                                         max_tokens=MAX_TOKENS, repeat_penalty=1.0)
        return out["choices"][0]["message"]["content"]
    return answer


def main():
    name, engine, target, *model_args = sys.argv[1:]
    if engine == "lmlab":
        answer = lambda p: lmlab_answer(target, model_args, p)
    else:
        answer = llama_cpp_answerer(target)
    distinct, train = questions()
    rows = []
    for q in distinct:
        a = answer(q)
        rows.append({"question": q, "answer": a, "seen": q in train,
                     "correct": bool(re.search(FACTS[q], a, re.S))})
    probe = answer(PROBE)
    share = lambda rs: sum(r["correct"] for r in rs) / max(len(rs), 1)
    unseen = [r for r in rows if not r["seen"]]
    seen = [r for r in rows if r["seen"]]
    summary = {"name": name, "all": share(rows), "unseen": share(unseen), "seen": share(seen),
               "n": len(rows), "n_unseen": len(unseen), "n_seen": len(seen),
               "probe": probe, "probe_correct": bool(re.search(PROBE_FACT, probe, re.S))}
    Path(f"{name}.json").write_text(json.dumps({"summary": summary, "answers": rows}, indent=1))
    print(f"{name:12s} facts {summary['all']:.0%} of {len(rows)} (unseen questions {summary['unseen']:.0%} of "
          f"{len(unseen)}, seen {summary['seen']:.0%} of {len(seen)}); probe {'yes' if summary['probe_correct'] else 'no'}: "
          f"{probe[:100]!r}")


if __name__ == "__main__":
    main()
