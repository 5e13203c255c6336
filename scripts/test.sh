#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine with Rust: installs what is missing
# (cmake, which builds Signal's reference C library), then the whole workspace's tests, the
# fuzz targets' build, and a short replay of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null 2>&1; then
    echo "==> installing cmake"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq cmake >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null
    fi
fi

echo "==> workspace tests"
cargo test --workspace --locked

echo "==> fuzz targets build and run briefly"
cargo build --manifest-path fuzz/Cargo.toml --quiet
for target in parse session_decrypt; do
    runs=20000
    [ "$target" = session_decrypt ] && runs=200
    ./fuzz/target/debug/"$target" -runs="$runs" -seed=1 2>&1 | tail -1
done
