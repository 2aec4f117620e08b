# The README's two commands are `make demo` and `make test`.
.PHONY: demo test bench lint build fuzz

# The recipes source scripts/lib.sh, which is bash; Make's default shell may be dash.
SHELL := /bin/bash

CARGO ?= cargo

build:
	@command -v cmake >/dev/null || (. scripts/lib.sh && ensure_packages cmake)
	$(CARGO) build --release --locked --bin certgate

demo: build
	./target/release/certgate demo --dir .certgate-demo

test:
	bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench:
	bash scripts/bench.sh

fuzz:
	bash scripts/fuzz.sh
