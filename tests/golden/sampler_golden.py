"""Golden outputs of mlx-lm's sampler (mlx_lm/sample_utils.py) for
tests/generate/sampler_test.cpp. Writes sampler/cases.json:

  filters   log-probabilities in, mlx-lm's top-p -> min-p -> top-k chain out
            (make_sampler's order and conditions), on random distributions and
            on constructed boundaries: a cumulative mass exactly at 1 - top_p,
            a log-probability exactly at max + log(min_p), ties at the k-th value.
  draws     logits, sampler settings and the exact distribution mlx-lm draws
            from: softmax(filtered * (1 / temp)), after its repetition penalty
            when a history is given; the C++ test draws from lmlab's Sampler
            and runs a chi-square test against it.
  penalty   logits and a history in, make_repetition_penalty's logits out.

mlx-lm compiles its filters (mx.compile); compilation is switched off here so
exp and cumsum round exactly as the same MLX ops in lmlab do, which the exact
boundary cases need (the semantics are mlx-lm's either way).
"""
import json
import math
import sys

import mlx.core as mx
import numpy as np
from mlx_lm import sample_utils as su

from _common import out_dir

V = 24


def f32list(a):
    """float32 values as JSON numbers (exact round trip); -inf as null."""
    return [None if math.isinf(x) and x < 0 else float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def mlxlm_filters(logprobs, top_p, min_p, top_k):
    # make_sampler's chain: the same order and the same conditions.
    lp = logprobs[None]
    if 0 < top_p < 1.0:
        lp = su.apply_top_p(lp, top_p)
    if min_p != 0.0:
        lp = su.apply_min_p(lp, min_p)
    if top_k > 0:
        lp = su.apply_top_k(lp, top_k)
    return lp[0]


def normalized(logits):
    x = mx.array(np.asarray(logits, dtype=np.float32))
    return x - mx.logsumexp(x, axis=-1, keepdims=True)  # generate_step's log-softmax


def filter_case(name, logprobs, top_p=1.0, min_p=0.0, top_k=0):
    lp = mx.array(np.asarray(logprobs, dtype=np.float32))
    out = mlxlm_filters(lp, top_p, min_p, top_k)
    return {"name": name, "logprobs": f32list(lp), "top_p": top_p, "min_p": min_p, "top_k": top_k,
            "filtered": f32list(out)}


def top_p_boundary():
    """A top_p whose 1 - top_p equals one cumulative mass exactly (float32): mlx-lm
    keeps a token only where the ascending cumulative mass is > 1 - top_p, so the
    token at the boundary is dropped (the kept set's mass is exactly top_p)."""
    lp = normalized(np.log([0.12, 0.3, 0.05, 0.4, 0.1, 0.03]))
    probs = np.array(mx.exp(lp))
    order = np.argsort(np.array(lp), kind="stable")
    cum = np.array(mx.cumsum(mx.array(probs[order])))
    k = int(np.argmax(cum >= 0.5))  # 1 - c is exact in float32 for c in [0.5, 1]
    top_p = float(np.float32(1.0) - np.float32(cum[k]))
    assert np.float32(1.0 - top_p) == cum[k] and float(1.0 - top_p) == float(cum[k])
    case = filter_case("top_p_at_cumulative_boundary", lp, top_p=top_p)
    wider = filter_case("", lp, top_p=float(np.nextafter(np.float32(top_p), np.float32(1))))
    assert case["filtered"].count(None) == wider["filtered"].count(None) + 1, "boundary is not sharp"
    return case


def min_p_boundary():
    """A log-probability exactly at max + log(min_p) is kept (mlx-lm drops only < )."""
    min_p = 0.25
    at = np.float32(0.0) + np.float32(math.log(min_p))
    lp = [0.0, float(at), -0.5, float(np.nextafter(at, np.float32(-10))), -4.0, -1.0]
    return filter_case("min_p_at_threshold", lp, min_p=min_p)


def filter_cases(rng):
    cases = [top_p_boundary(), min_p_boundary()]
    ties = [-1.0, -2.0, -2.0, -0.5, -2.0, -3.0, -2.0, -1.5]
    for k in (1, 2, 3, 4, 5, 7):
        cases.append(filter_case(f"top_k_{k}_with_ties", ties, top_k=k))
    for i in range(6):
        lp = normalized(rng.standard_normal(V) * (0.8 + 0.4 * i))
        for top_p, min_p, top_k in [(0.9, 0, 0), (0.5, 0, 0), (0.99, 0, 0), (1.0, 0.05, 0), (1.0, 0.3, 0),
                                    (1.0, 0, 1), (1.0, 0, 6), (1.0, 0, V - 1), (0.8, 0.1, 0), (0.95, 0.02, 10),
                                    (0.7, 0, 3)]:
            cases.append(filter_case(f"random_{i}", lp, top_p, min_p, top_k))
    return cases


def draw_case(name, logits, temp, top_p=1.0, min_p=0.0, top_k=0, history=None, penalty=1.0):
    x = mx.array(np.asarray(logits, dtype=np.float32))[None]
    if history:
        x = su.make_repetition_penalty(penalty, context_size=len(history))(mx.array(history), x)
    lp = x[0] - mx.logsumexp(x[0], axis=-1, keepdims=True)
    filtered = mlxlm_filters(lp, top_p, min_p, top_k)
    scaled = np.array(filtered * (1.0 / temp), dtype=np.float64)  # categorical_sampling's scaling
    p = np.exp(scaled - scaled.max())
    p /= p.sum()
    return {"name": name, "logits": f32list(logits), "temp": temp, "top_p": top_p, "min_p": min_p,
            "top_k": top_k, "history": history or [], "penalty": penalty, "probs": p.tolist()}


def draw_cases(rng):
    logits = (rng.standard_normal(12) * 1.5).astype(np.float32)
    cases = [draw_case(f"temp_{t}", logits, t) for t in (0.3, 0.6, 1.0, 1.6, 2.5)]
    cases += [draw_case("top_p_0.8_temp_0.7", logits, 0.7, top_p=0.8),
              draw_case("min_p_0.1_temp_1.4", logits, 1.4, min_p=0.1),
              draw_case("top_k_5_temp_0.5", logits, 0.5, top_k=5),
              draw_case("all_filters_temp_1.2", logits, 1.2, top_p=0.95, min_p=0.02, top_k=8),
              draw_case("penalty_1.5_temp_0.8", logits, 0.8, history=[int(np.argmax(logits)), 3, 3, 7],
                        penalty=1.5)]
    return cases


def penalty_cases(rng):
    cases = []
    for penalty in (1.3, 0.7, 2.0):
        logits = (rng.standard_normal(V) * 3).astype(np.float32)
        history = [int(t) for t in rng.integers(0, V, size=9)]
        out = su.make_repetition_penalty(penalty, context_size=len(history))(mx.array(history),
                                                                             mx.array(logits)[None])[0]
        cases.append({"logits": f32list(logits), "history": history, "penalty": penalty, "expected": f32list(out)})
    return cases


def main():
    mx.disable_compile()
    rng = np.random.default_rng(17)
    golden = {"filters": filter_cases(rng), "draws": draw_cases(rng), "penalty": penalty_cases(rng)}
    (out_dir("sampler") / "cases.json").write_text(json.dumps(golden))
    print(f"sampler_golden: {len(golden['filters'])} filter cases, {len(golden['draws'])} distributions, "
          f"{len(golden['penalty'])} penalty cases", file=sys.stderr)


if __name__ == "__main__":
    main()
