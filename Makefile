# opsline: thin wrapper over CMake. `make test` and `make demo` work on a fresh Debian 12.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test demo asan fuzz format format-check bench install clean

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

# Unit, integration, end-to-end and SDK tests under AddressSanitizer (with LeakSanitizer) +
# UndefinedBehaviorSanitizer: the tests, the opsline binary they run and its plugins are
# all instrumented (the SDK examples, built out of tree as a third party would, are not);
# any sanitizer report from any of them fails the run.
ASAN_LABELS ?= unit|integration|e2e|sdk
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOPSLINE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@scripts/asan-test.sh $(ASAN_BUILD) '$(ASAN_LABELS)' $(JOBS)

# Every fuzz target of fuzz/ (or FUZZ_TARGETS="xml dotenv") for FUZZ_SECONDS each, with
# clang's libFuzzer under ASan + UBSan, from the seed corpus in fuzz/corpus/.
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DOPSLINE_FUZZ=ON -DOPSLINE_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
