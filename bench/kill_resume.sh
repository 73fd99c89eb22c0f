#!/usr/bin/env bash
# Crash safety of `lmlab lora`, at length: the test
# Resume.CliKilledAtRandomMomentsEndsWithTheUninterruptedAdapters with up to N
# SIGKILLs at seeded random moments (CI asks for 3) over a run of 8N iterations
# (fewer when a resumed run ends before its moment). After every kill each
# named .safetensors file must load whole, and after the last resume the
# adapters must equal an uninterrupted run's bit for bit.
# Usage: bench/kill_resume.sh [N]   (after `make test` built the suite and fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
LMLAB_KILLS=${1:-50} build/lmlab_tests --gtest_filter='Resume.CliKilledAtRandomMoments*'
