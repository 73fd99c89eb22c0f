"""Golden dequantizations of every GGML quant type lmlab loads, for
tests/io/ggml_quants_test.cpp (and the quantized-matmul tests that reuse them).

Blocks come from the real quantizers: the `gguf` package's own for Q4_0, Q4_1,
Q5_0, Q5_1 and Q8_0, and llama.cpp's `ggml_quantize_chunk` (called through
ctypes in llama-cpp-python's libggml-base.so) for the K-quants and IQ4_NL/IQ4_XS,
which the `gguf` package cannot quantize. A second set per type is hand-made:
random bytes with finite float16 scales, so every bit of every field is
exercised (negative super-scales, the top scale bits, all codebook entries).
Every set is dequantized by the `gguf` package; the C++ tests must match it bit
for bit. Written to one GGUF: `<type>.<source>.weight` (the blocks) and
`<type>.<source>.expected` (F32).
"""
import ctypes
import glob
from pathlib import Path

import numpy as np

from _common import out_dir

ROWS, COLS = 6, 512
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
GGUF_QUANTIZERS = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}
# Byte offsets of each block's float16 scales (d, dmin), made finite in random blocks.
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "IQ4_NL": [0], "IQ4_XS": [0]}


def ggml_base():
    import llama_cpp

    lib = ctypes.CDLL(glob.glob(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))[0])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


class TypeTraits(ctypes.Structure):
    # struct ggml_type_traits (ggml.h): name, block size, interleave, type size, is_quantized, to_float, ...
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool),
                ("to_float", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64))]


def ggml_to_float(lib, qtype, raw):
    """llama.cpp's own dequantization of the blocks: a second oracle the gguf package must agree with."""
    traits = lib.ggml_get_type_traits(int(qtype)).contents
    out = np.zeros(ROWS * COLS, np.float32)
    src = np.ascontiguousarray(raw)
    traits.to_float(src.ctypes.data, out.ctypes.data, out.size)
    return out.reshape(ROWS, COLS)


def weights(rng):
    # A realistic spread: mostly small, a few outliers per row, one all-zero block.
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32) * 0.02
    w[rng.random((ROWS, COLS)) < 0.01] *= 12
    w[1, 256:288] = 0
    return w


def quantize(lib, qtype, w):
    import gguf

    if qtype.name in GGUF_QUANTIZERS:
        return gguf.quants.quantize(w, qtype)
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    out = np.zeros((ROWS, COLS // block * nbytes), np.uint8)
    lib.ggml_quantize_init(int(qtype))
    src = np.ascontiguousarray(w)
    n = lib.ggml_quantize_chunk(int(qtype), src.ctypes.data, out.ctypes.data, 0, ROWS, COLS, None)
    assert n == out.nbytes, (qtype.name, n, out.nbytes)
    return out


def random_blocks(rng, qtype, name):
    import gguf

    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (ROWS * COLS // block, nbytes), dtype=np.uint8)
    for off in HALF_FIELDS[name]:
        halves = (rng.standard_normal(raw.shape[0]) * 0.01).astype(np.float16)
        halves[::7] = -halves[::7]
        raw[:, off:off + 2] = halves.view(np.uint8).reshape(-1, 2)
    return raw.reshape(ROWS, -1)


def main():
    import gguf

    lib = ggml_base()
    rng = np.random.default_rng(14)
    writer = gguf.GGUFWriter(str(out_dir("quants") / "ggml_quants.gguf"), "llama")
    for name in TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        for source, raw in (("quantized", quantize(lib, qtype, weights(rng))),
                            ("random", random_blocks(rng, qtype, name))):
            expected = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(ROWS, COLS)
            assert np.isfinite(expected).all(), (name, source)
            assert np.array_equal(expected.view(np.uint32), ggml_to_float(lib, qtype, raw).view(np.uint32)), \
                f"{name} {source}: the gguf package and llama.cpp dequantize differently"
            writer.add_tensor(f"{name}.{source}.weight", raw, raw_dtype=qtype)
            writer.add_tensor(f"{name}.{source}.expected", expected)
        print(f"ggml_quants: {name} {ROWS}x{COLS}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
