"""Golden outputs of llama.cpp's own CPU matmul kernels, for lmlab's int8
activation mode (tests/models/oracle_test.cpp, Oracle.Q8ActivationsMatchGgmlKernels).

The ggml CPU library inside llama-cpp-python is called directly through ctypes:
each activation row is rounded by ggml's quantize_row_q8_1 / quantize_row_q8_0
(the type's vec_dot_type) and multiplied by the GGUF tensor's raw blocks with
ggml_vec_dot_q4_1_q8_1 / ggml_vec_dot_q8_0_q8_0, exactly as llama.cpp's
mul_mat does on this CPU. Tensors of the default model: a Q4_1 with K = 576,
a Q4_1 with K = 1536, and the first rows of the Q8_0 token embedding; and a
Q4_0 tensor (random weights quantized by the gguf package) written to
q4_0.gguf, multiplied through quantize_row_q8_0 and ggml_vec_dot_q4_0_q8_0.
"""
import ctypes
import glob
import json
from pathlib import Path

import numpy as np

from _common import MODEL, out_dir

TENSORS = [("blk.0.attn_v.weight", None), ("blk.3.ffn_down.weight", None), ("token_embd.weight", 96)]
ROWS = 3


def ggml_cpu():
    import llama_cpp

    lib = ctypes.CDLL(glob.glob(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"))[0])
    lib.ggml_cpu_init()
    for q in ("quantize_row_q8_1", "quantize_row_q8_0"):
        getattr(lib, q).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for d in ("ggml_vec_dot_q4_1_q8_1", "ggml_vec_dot_q8_0_q8_0", "ggml_vec_dot_q4_0_q8_0"):
        getattr(lib, d).argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


def ggml_outputs(lib, kind, raw, K, n, rng):
    """ggml's result for ROWS random activation rows against the first n rows of raw blocks."""
    act_bytes = {"Q4_1": 36, "Q8_0": 34, "Q4_0": 34}[kind] * (K // 32)
    quantize = lib.quantize_row_q8_1 if kind == "Q4_1" else lib.quantize_row_q8_0
    dot = {"Q4_1": lib.ggml_vec_dot_q4_1_q8_1, "Q8_0": lib.ggml_vec_dot_q8_0_q8_0,
           "Q4_0": lib.ggml_vec_dot_q4_0_q8_0}[kind]
    # Activations of a realistic spread: a few large channels, as after RMSNorm.
    x = (rng.standard_normal((ROWS, K)) * np.where(rng.random(K) < 0.02, 8.0, 1.0)).astype(np.float32)
    y = np.zeros((ROWS, n), np.float32)
    out = np.zeros(1, np.float32)
    for m in range(ROWS):
        xq = np.zeros(act_bytes, np.uint8)
        quantize(np.ascontiguousarray(x[m]).ctypes.data, xq.ctypes.data, K)
        for r in range(n):
            row = np.ascontiguousarray(raw[r])
            dot(K, out.ctypes.data, 0, row.ctypes.data, 0, xq.ctypes.data, 0, 1)
            y[m, r] = out[0]
    return x, y


def write_q4_0(dest, rng, N, K):
    """A one-tensor GGUF holding random N×K weights quantized to Q4_0 by the gguf package."""
    import gguf

    w = gguf.GGUFWriter(str(dest), "llama")
    raw = gguf.quants.quantize(rng.standard_normal((N, K)).astype(np.float32) * 0.05, gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("blk.0.attn_v.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return raw


def main():
    import gguf

    lib = ggml_cpu()
    reader = gguf.GGUFReader(str(MODEL))
    rng = np.random.default_rng(7)
    cases = []
    for name, max_rows in TENSORS:
        t = next(t for t in reader.tensors if t.name == name)
        kind = t.tensor_type.name  # Q4_1 or Q8_0
        raw = np.ascontiguousarray(t.data).view(np.uint8)
        K = int(t.shape[0])
        raw = raw.reshape(-1, raw.size // int(t.shape[1]))
        n = int(t.shape[1]) if max_rows is None else max_rows
        x, y = ggml_outputs(lib, kind, raw, K, n, rng)
        cases.append({"tensor": name, "type": kind, "x": x.tolist(), "y": y.tolist()})
        print(f"ggml_kernels: {name} ({kind}) {ROWS}x{K} @ {n} rows")
    dest = out_dir("model")
    N, K = 64, 576
    raw = write_q4_0(dest / "q4_0.gguf", rng, N, K)
    x, y = ggml_outputs(lib, "Q4_0", raw, K, N, rng)
    cases.append({"tensor": "blk.0.attn_v.weight", "file": "q4_0.gguf", "type": "Q4_0", "x": x.tolist(),
                  "y": y.tolist()})
    print(f"ggml_kernels: q4_0.gguf ({N}x{K}, Q4_0)")
    (dest / "ggml_kernels.json").write_text(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
