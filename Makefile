# The two commands: `make run` and `make test`. Everything else is a step of those.
BACKEND ?= cpu
BUILD ?= build
JOBS ?= $(shell nproc)
PROMPT ?= Explain in two sentences why the sky is blue.
CMAKE_FLAGS ?=
# SANITIZE=address,undefined builds everything of lmlab's with those
# sanitizers into build-sanitize (MLX itself is not instrumented) and runs the
# suite there: `make test SANITIZE=address,undefined`.
SANITIZE ?=
ifneq ($(SANITIZE),)
BUILD = build-sanitize
CMAKE_FLAGS += -DLMLAB_SANITIZE=$(SANITIZE)
TEST_TIMEOUT = 2700
endif

FUZZ_SECONDS ?= 20
# A fixed seed makes the run in `make test` repeat the same inputs as here
# (a longer run covers a shorter one); FUZZ_SEED=0 picks a fresh one.
FUZZ_SEED ?= 1
# Any single test running longer than this fails by name instead of stalling the run.
TEST_TIMEOUT ?= 900
# Each step prints when it starts, so a slow step shows in a CI log.
STAMP = @echo "make: $@ $$(date -u +%T)"

.PHONY: run test setup setup-test build model fixtures fuzz clean bench mutation

run: build model
	./$(BUILD)/lmlab generate --prompt "$(PROMPT)" --max-tokens 128

test: setup-test build model fixtures fuzz
	$(STAMP)
	cd $(BUILD) && ctest --output-on-failure --timeout $(TEST_TIMEOUT) -j $(JOBS)
	$(STAMP) done

setup:
	$(STAMP)
	scripts/setup.sh --backend $(BACKEND)

setup-test:
	$(STAMP)
	scripts/setup.sh --backend $(BACKEND) --test

# CUDA: cuDNN headers/libs for MLX's CMake config (the CUDA toolkit's own by default).
ifeq ($(BACKEND),cuda)
CUDNN_ROOT ?= /usr/local/cuda
CMAKE_FLAGS += -DCUDNN_INCLUDE_PATH=$(CUDNN_ROOT)/include -DCUDNN_LIBRARY_PATH=$(CUDNN_ROOT)/lib
endif

build: setup
	$(STAMP)
	cmake -S . -B $(BUILD) -DLMLAB_BACKEND=$(BACKEND) $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)
	cmake --build $(BUILD) -j $(JOBS)

model:
	@scripts/fetch-model.sh > /dev/null

fixtures: setup-test model
	$(STAMP)
	scripts/make-fixtures.sh

# libFuzzer targets (tokenizer.json, chat templates, serve's request bodies,
# GGUF, safetensors, config.json and fine-tuning JSONL), run briefly from the corpora in tests/fuzz/seeds.
FUZZERS = tokenizer chat_template http_body gguf safetensors config jsonl
fuzz: setup-test
	$(STAMP)
	CXX=clang++-14 cmake -S . -B build-fuzz -DLMLAB_BUILD_FUZZERS=ON -DLMLAB_BUILD_TESTS=OFF > build-fuzz.configure.log 2>&1 || (cat build-fuzz.configure.log; exit 1)
	cmake --build build-fuzz -j $(JOBS) --target $(addsuffix _fuzz,$(FUZZERS))
	@for t in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  build-fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED) -rss_limit_mb=2048 -timeout=10 \
	    -artifact_prefix=build-fuzz/$$t- \
	    build-fuzz/corpus/$$t tests/fuzz/seeds/$$t > build-fuzz/$$t.log 2>&1 \
	    || { tail -40 build-fuzz/$$t.log; exit 1; }; \
	  grep -E "^Done|DONE" build-fuzz/$$t.log | tail -1; \
	done

# The mutation check (not part of `make test`): plants each one-line bug of
# tests/mutation/mutations.txt in a copy of the tree and reports which the
# tests catch. MUTATIONS="gen- tok-" runs only the entries named so.
mutation: build model fixtures
	python3 tests/mutation/run.py --jobs $(JOBS) $(MUTATIONS)

bench: build model setup-test
	.deps/py/bin/python bench/compare.py

clean:
	rm -rf $(BUILD) $(BUILD).configure.log build-fuzz build-fuzz.configure.log build-mutation
