#!/bin/sh
# Regenerates the adversarial corpus in tests/vectors/ from tests/gen_vectors.rs.
# Deterministic: rerunning without changing the generator rewrites identical bytes.
# `cargo test` fails (committed_vectors_are_up_to_date) when the files are stale.
set -eu
cd "$(dirname "$0")/.."
TKA_REGENERATE_VECTORS=1 cargo test --quiet --test gen_vectors committed_vectors_are_up_to_date -- --nocapture
cargo test --quiet --test vectors
