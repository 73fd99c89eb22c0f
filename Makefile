# The two commands: `make run` and `make test`. Everything else is a step of those.
BACKEND ?= cpu
BUILD ?= build
JOBS ?= $(shell nproc)
PROMPT ?= Explain in two sentences why the sky is blue.
CMAKE_FLAGS ?=

.PHONY: run test setup setup-test build model fixtures clean bench

run: build model
	./$(BUILD)/lmlab generate --prompt "$(PROMPT)" --max-tokens 128

test: setup-test build model fixtures
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

setup:
	scripts/setup.sh --backend $(BACKEND)

setup-test:
	scripts/setup.sh --backend $(BACKEND) --test

build: setup
	cmake -S . -B $(BUILD) -DLMLAB_BACKEND=$(BACKEND) $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)
	cmake --build $(BUILD) -j $(JOBS)

model:
	@scripts/fetch-model.sh > /dev/null

fixtures: setup-test model
	scripts/make-fixtures.sh

bench: build model setup-test
	.deps/py/bin/python bench/compare.py

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
