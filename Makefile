# opsline: thin wrapper over CMake. `make test` and `make demo` work on a fresh Debian 12.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test demo asan format format-check bench install clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Ends with the list of skipped tests (ctest, cmocka and unittest skips); with CI=true a
# skip fails the run, since CI has every prerequisite a test may skip for.
test: build
	@rc=0; ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) \
	  --output-junit $(abspath $(BUILD))/Testing/junit.xml || rc=$$?; \
	  scripts/test-summary.py $(abspath $(BUILD))/Testing/junit.xml || [ $$rc -ne 0 ] || rc=1; \
	  exit $$rc

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOPSLINE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -L unit -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

# The peer comparison (bench/run.sh), then the scale bench (bench/scale.sh: 1,000 and 5,000
# products, memory and CPU per request); both run even when the first misses a target.
bench: build
	@rc=0; bench/run.sh $(BUILD) || rc=$$?; bench/scale.sh $(BUILD) || rc=$$?; exit $$rc

install: build
	@cmake --install $(BUILD)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
