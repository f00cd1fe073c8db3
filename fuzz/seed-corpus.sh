#!/usr/bin/env bash
# Seeds fuzz/corpus/esl_decode from the real captures: each FS→app stream whole, and each frame.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/esl_decode
mkdir -p "$out"
cargo run -q --example capture_frames -- tests/fixtures/esl "$out"
echo "seeded $(ls "$out" | wc -l) inputs into $out"
