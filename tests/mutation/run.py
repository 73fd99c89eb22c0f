#!/usr/bin/env python3
"""The mutation check: do the tests fail when the code is wrong?

Applies each one-line mutation of tests/mutation/mutations.txt, one at a time,
to a throw-away copy of the source tree (build-mutation/tree, rebuilt
incrementally with ccache), runs that mutation's tests, and reports whether a
test failed (killed) or all passed (survived), then the kill rate.

  tests/mutation/run.py                  every mutation
  tests/mutation/run.py sampler tok-     only those whose name contains one of the words
  tests/mutation/run.py --list FILE      another mutation list

An entry's tests are a gtest filter for build/lmlab_tests, or `ctest:REGEX`
for the tests ctest runs by name (the Python ones, which drive the `lmlab`
binary through real clients: the server's openai and browser tests).

A mutation whose text no longer matches its file exactly (the code moved or
changed) or that no longer compiles stops the run: fix or re-anchor the entry.
Exit status: 0 when the kill rate reaches --min-rate (default 0.95), 1 otherwise,
2 for a stale or broken entry.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mutation:
    name: str
    path: str
    occurrence: int  # 1-based: which match of `before` in the file (0: it must be unique)
    tests: str  # gtest filter, or `ctest:REGEX` for tests ctest runs (the Python ones)
    before: str
    after: str
    line: int  # in the list file


def parse_list(list_file: Path) -> list:
    """Entries `name | file[#N] | gtest filter | before => after`, one per line."""
    out, seen = [], set()
    for n, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ", 3)]
        if len(parts) != 4 or " => " not in parts[3]:
            sys.exit(f"{list_file}:{n}: expected 'name | file[#N] | gtest filter | before => after'")
        name, target, tests, change = parts
        before, after = change.split(" => ", 1)
        path, _, occ = target.partition("#")
        if name in seen:
            sys.exit(f"{list_file}:{n}: duplicate mutation name '{name}'")
        seen.add(name)
        out.append(Mutation(name, path, int(occ or 0), tests, before, after, n))
    return out


def stale(m: Mutation, root: Path):
    """Why the entry no longer applies to the tree at `root`, or None."""
    where = f"stale: mutation '{m.name}' (list line {m.line})"
    if not (root / m.path).is_file():
        return f"{where}: no file {m.path}"
    hits = len(re.findall(re.escape(m.before), (root / m.path).read_text(encoding="utf-8")))
    if hits == 0:
        return f"{where}: '{m.before}' is no longer in {m.path}; re-anchor or remove the entry"
    if m.occurrence == 0 and hits > 1:
        return f"{where}: '{m.before}' occurs {hits} times in {m.path}; name one with {m.path}#N"
    if m.occurrence > hits:
        return f"{where}: {m.path}#{m.occurrence} but '{m.before}' occurs {hits} times"
    return None


def check_all(mutations: list, root: Path) -> None:
    problems = [p for p in (stale(m, root) for m in mutations) if p]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(2)


def locate(m: Mutation, text: str) -> int:
    """Offset of the mutated text in the file (the entry was checked not stale)."""
    hits = [i.start() for i in re.finditer(re.escape(m.before), text)]
    return hits[max(m.occurrence, 1) - 1]


def sync_tree(work: Path) -> Path:
    """Copies the checkout's tracked and unignored files into work/tree (only
    changed files are rewritten, so the build there stays incremental)."""
    tree = work / "tree"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    wanted = set()
    for rel in filter(None, files):
        src, dst = ROOT / rel, tree / rel
        if not src.is_file() or rel.startswith("build-mutation/"):
            continue
        wanted.add(rel)
        if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for sub in ("src", "include", "tests"):  # files deleted in the checkout
        for p in (tree / sub).rglob("*"):
            if p.is_file() and str(p.relative_to(tree)) not in wanted:
                p.unlink()
    # The copy sees the same dependencies, fixtures and ../shared as the checkout.
    deps = tree / ".deps"
    if not deps.exists():
        deps.symlink_to(ROOT / ".deps")
    shared = work / "shared"
    if not shared.exists() and (ROOT.parent / "shared").exists():
        shared.symlink_to(ROOT.parent / "shared")
    return tree


def build(tree: Path, jobs: int, log: Path, targets=("lmlab", "lmlab_tests")) -> bool:
    bdir = tree / "build"
    if not (bdir / "CMakeCache.txt").exists():
        cfg = ["cmake", "-S", str(tree), "-B", str(bdir), "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ccache"):
            cfg.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        subprocess.run(cfg, check=True, stdout=subprocess.DEVNULL)
    with open(log, "w") as f:
        r = subprocess.run(["cmake", "--build", str(bdir), "-j", str(jobs), "--target", *targets],
                           stdout=f, stderr=subprocess.STDOUT)
    return r.returncode == 0


def run_ctest(tree: Path, regex: str, timeout: int):
    """Like run_tests, for `ctest:REGEX` entries: the Python tests that drive the
    `lmlab` binary (the server's, for example) through their real clients."""
    t0 = time.time()
    try:
        r = subprocess.run(["ctest", "--test-dir", str(tree / "build"), "-R", regex, "--timeout", str(timeout)],
                           capture_output=True, text=True, errors="replace", timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s", time.time() - t0
    dt = time.time() - t0
    out = r.stdout + r.stderr
    if "No tests were found" in out:
        return False, "no test matches the filter", dt
    if r.returncode == 0:
        ran = re.search(r"tests passed, 0 tests failed out of (\d+)", out)
        return True, f"{ran.group(1) if ran else '?'} tests pass", dt
    failed = sorted(set(re.findall(r"\d+ - ([\w.]+) \(", out)))
    return False, (f"{len(failed)} failed: " + ", ".join(failed[:4])) if failed else f"exit status {r.returncode}", dt


def run_tests(tree: Path, gtest_filter: str, timeout: int):
    """(passed, summary): the failing test names, or why the run ended."""
    if gtest_filter.startswith("ctest:"):
        return run_ctest(tree, gtest_filter[len("ctest:"):], timeout)
    cmd = [str(tree / "build" / "lmlab_tests"), f"--gtest_filter={gtest_filter}", "--gtest_brief=1"]
    env = dict(os.environ, LMLAB_SOURCE_DIR=str(tree))
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=tree / "build", env=env, capture_output=True, text=True, errors="replace",
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s", time.time() - t0
    dt = time.time() - t0
    out = r.stdout + r.stderr
    ran = re.search(r"\[==========\] (\d+) tests? from", out)
    if r.returncode == 0:
        if not ran or int(ran.group(1)) == 0:
            return False, "no test matches the filter", dt
        return True, f"{ran.group(1)} tests pass", dt
    failed = sorted(set(re.findall(r"\[  FAILED  \] ([\w/.]+)", out)))
    if failed:
        return False, f"{len(failed)} failed: " + ", ".join(failed[:4]) + (" ..." if len(failed) > 4 else ""), dt
    return False, f"exit status {r.returncode}" + (" (crash)" if r.returncode < 0 else ""), dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="run only mutations whose name contains one of these")
    ap.add_argument("--list", type=Path, default=ROOT / "tests" / "mutation" / "mutations.txt")
    ap.add_argument("--work", type=Path, default=ROOT / "build-mutation")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    ap.add_argument("--min-rate", type=float, default=0.95)
    ap.add_argument("--check", action="store_true", help="only check that every entry still matches its file")
    args = ap.parse_args()

    mutations = parse_list(args.list)
    if args.only:
        mutations = [m for m in mutations if any(w in m.name for w in args.only)]
    if not mutations:
        sys.exit("no mutation selected")
    if args.check:
        check_all(mutations, ROOT)
        print(f"mutation: {len(mutations)} entries match their files")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    tree = sync_tree(args.work)
    log = args.work / "build.log"
    check_all(mutations, tree)  # every entry must match before anything is built

    print(f"mutation: building the unmutated copy in {tree}", flush=True)
    if not build(tree, args.jobs, log):
        sys.exit(f"the unmutated tree does not build; see {log}")
    baseline = {}
    for f in sorted({m.tests for m in mutations}):
        ok, why, dt = run_tests(tree, f, args.timeout)
        print(f"mutation: baseline {f}: {why} ({dt:.0f} s)", flush=True)
        if not ok:
            sys.exit(f"the tests '{f}' fail without any mutation: {why}")
        baseline[f] = dt

    results = []
    for i, m in enumerate(mutations, 1):
        path = tree / m.path
        original = path.read_text(encoding="utf-8")
        at = locate(m, original)
        lineno = original.count("\n", 0, at) + 1
        path.write_text(original[:at] + m.after + original[at + len(m.before):], encoding="utf-8")
        try:
            t0 = time.time()
            # Both binaries: many tests run the lmlab binary (the CLI's, the
            # bad-input corpus, the Python ones), and an unmutated one would
            # make a survivor of a bug those tests catch.
            targets = ("lmlab", "lmlab_tests")
            if not build(tree, args.jobs, log, targets):
                print(f"broken: mutation '{m.name}' ({m.path}:{lineno}) does not compile; see {log}")
                return 2
            tb = time.time() - t0
            ok, why, dt = run_tests(tree, m.tests, max(args.timeout, int(10 * baseline[m.tests])))
        finally:
            path.write_text(original, encoding="utf-8")
        status = "SURVIVED" if ok else "killed"
        results.append((m, lineno, ok, why))
        print(f"[{i:3}/{len(mutations)}] {status:8} {m.name}  {m.path}:{lineno}  "
              f"`{m.before}` -> `{m.after}`  [{m.tests}] {why} (build {tb:.0f} s, tests {dt:.0f} s)", flush=True)

    build(tree, args.jobs, log)  # leave the copy built unmutated
    killed = sum(not ok for _, _, ok, _ in results)
    rate = killed / len(results)
    print(f"\nmutation: {killed}/{len(results)} killed, kill rate {100 * rate:.1f}%")
    for m, lineno, ok, why in results:
        if ok:
            print(f"  survived: {m.name}  {m.path}:{lineno}  `{m.before}` -> `{m.after}`")
    return 0 if rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
