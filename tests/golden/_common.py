"""Shared helpers for the golden-file scripts: where fixtures go, where inputs are."""
import lzma
import os
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("LMLAB_SOURCE_DIR", Path(__file__).resolve().parents[2]))
FIXTURES = Path(os.environ.get("LMLAB_FIXTURES", SOURCE_DIR / ".deps" / "fixtures"))
SHARED = SOURCE_DIR.parent / "shared"
MODEL = Path(os.environ["LMLAB_MODEL"]) if "LMLAB_MODEL" in os.environ else None
TOKENIZER_NAMES = ["llama3", "llama3_1", "qwen3", "llama2", "gemma3", "deepseek_v3"]


def shared_tokenizer_json(name: str) -> str:
    """Text of ../shared/tokenizers/NAME/tokenizer.json (stored xz-compressed)."""
    with lzma.open(SHARED / "tokenizers" / name / "tokenizer.json.xz", "rt", encoding="utf-8") as f:
        return f.read()


def out_dir(sub: str) -> Path:
    p = FIXTURES / sub
    p.mkdir(parents=True, exist_ok=True)
    return p
