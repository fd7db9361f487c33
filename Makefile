# Sluice — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := build

SWIFT ?= swift
APT_PACKAGES := pkg-config protobuf-c-compiler libprotobuf-c-dev libnghttp2-dev libssl-dev zlib1g-dev libzstd-dev zstd nghttp2-client curl openssl libclang-rt-14-dev jq
PYTHON ?= python3
FUZZ_SECONDS ?= 60

.PHONY: deps build release run test test-unit test-e2e test-asan fuzz bench proto clean

# Installs what building and testing need, quietly when it is already there.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(PYTHON) -m pip install -q --disable-pip-version-check -r Tests/e2e/requirements.txt 2>&1 | grep -v -i "warning: running pip as" || true

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PYTHON) -m pytest -q Tests/e2e
	$(MAKE) test-asan

test-unit: deps
	$(SWIFT) test

test-e2e: build
	$(PYTHON) -m pytest -q Tests/e2e

# The unit tests again (hostile input among them) under AddressSanitizer and
# LeakSanitizer, in a build folder of their own.
test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/.lsan-suppressions $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --disable-xctest

fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# Decode and encode loops on one core, then the whole collector under load with
# Rotel beside it (Benchmarks/README.md). BENCH_JSON=FILE also writes the figures as JSON.
BENCH_JSON ?=
bench: deps
	$(SWIFT) build -c release
	$(PYTHON) Benchmarks/runtime.py $(if $(BENCH_JSON),--json $(BENCH_JSON))

# Builds the release binary and runs the default configuration (collector.yaml).
run: deps
	$(SWIFT) build -c release --product sluice
	mkdir -p data
	.build/release/sluice --config collector.yaml

# Regenerates Sources/COTLP from proto/ (needs protoc-c and libprotobuf-dev's descriptor.proto).
proto:
	scripts/generate-proto.sh

clean:
	rm -rf .build .build-asan .build-fuzz
