#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine with Rust: installs what is missing
# (cmake, which builds Signal's reference C library; postgresql, whose servers the relay's
# PostgreSQL tests start themselves), checks that the cores link no I/O and that
# the product holds no bug switch, then the whole workspace's tests, every example, the simulator's
# test of a deliberate client bug (in a build of its own), the fuzz targets' build, a short replay
# of each fuzz target while the API docs build (no warning, every public item documented), and the
# differential fuzz target finding a deliberate divergence from libsignal-c (in a build of its own,
# made beside the replays too).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything here is built once, from nothing, in CI: incremental compilation's bookkeeping would
# only cost time.
export CARGO_INCREMENTAL=0

# PostgreSQL's server binaries: Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

echo "==> cores link no I/O, and the product holds no bug switch"
scripts/check-cores.sh

echo "==> workspace tests"
cargo test --workspace --locked

echo "==> examples: every example of every package runs to completion"
# Each example ends with a check of what it shows and exits non-zero if that fails. The ones that
# need processes around them (relays, a peer to face) are run by the test named beside them, which
# the workspace tests above already ran; a new example is run here unless it is added to that list.
declare -A run_by_test=(
    [poll_bot]="tests/bot_processes.rs"
    [run_scenario]="crates/sim/tests/examples.rs"
    [toy_peer]="crates/peer/tests/runner.rs"
)
examples="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "example" in target["kind"]:
            print(package["name"], target["name"])
')"
while read -r package example; do
    if [ -n "${run_by_test[$example]:-}" ]; then
        echo "--- $package: $example (run by ${run_by_test[$example]})"
        continue
    fi
    echo "--- $package: $example"
    # Built by the workspace tests above, with the workspace's features (`cargo run -p` would
    # build the package's dependencies again with its own).
    binary=target/debug/examples/"$example"
    [ -x "$binary" ] || { echo "FAILED: $binary was not built by the workspace tests"; exit 1; }
    "$binary" </dev/null
done <<<"$examples"

echo "==> the simulator catches a client that does not rotate on removal, accepts a downgraded"
echo "    session, or takes group changes from any member (a build of its own: these deliberate bugs exist only under"
echo "    --cfg switchboard_inject_bugs, never in the product)"
RUSTFLAGS="--cfg switchboard_inject_bugs" cargo test --locked -p switchboard-sim --test scenarios \
    --target-dir target/inject-bugs -- --include-ignored \
    a_client_that_does_not_rotate_on_removal_is_caught a_client_that_accepts_a_downgrade_is_caught \
    a_client_that_takes_changes_from_any_member_is_caught

echo "==> fuzz targets: build, replay every corpus, run each briefly (see FUZZING.md)"
# A plain build of fuzz/ gives libFuzzer binaries without coverage feedback: enough to replay the
# checked-in corpora and to run random inputs through every check, on the stable toolchain and
# without cargo-fuzz. New inputs go to a scratch folder; a crash is kept in fuzz/artifacts/.
cargo build --manifest-path fuzz/Cargo.toml --locked --quiet
fuzz_scratch="$(mktemp -d)"
# The API docs, and the deliberate divergence's fuzz target (the last step), build meanwhile: each
# fuzz target runs on one core, so the other is free.
docs_log="$fuzz_scratch/docs.log"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet >"$docs_log" 2>&1 &
docs_pid=$!
host="$(rustc -vV | sed -n 's/^host: //p')"
divergence_build_log="$fuzz_scratch/inject-divergence-build.log"
RUSTFLAGS="--cfg switchboard_inject_divergence --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions" \
    cargo build --manifest-path fuzz/Cargo.toml --locked --quiet --release --target "$host" \
    --target-dir fuzz/target/inject-divergence --bin differential_session >"$divergence_build_log" 2>&1 &
divergence_build_pid=$!
# (Under set -e a failing command in the trap sets the exit status: the jobs are usually done.)
trap 'kill "$docs_pid" "$divergence_build_pid" 2>/dev/null || true; rm -rf "$fuzz_scratch"' EXIT
fuzz_run() { # log name, then the command; prints libFuzzer's last line, or the failure
    local log="$fuzz_scratch/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -40 "$log"
        echo "FAILED: $*"
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1
}
for target in decode_wire session_decrypt group_decrypt session_interaction group_interaction group_control peer_request relay_frames scenario_file \
    differential_session differential_group endpoint; do
    binary=./fuzz/target/debug/"$target"
    dict=()
    case "$target" in
        decode_wire) dict=(-dict=fuzz/dict/protobuf.dict) ;;
        peer_request) dict=(-dict=fuzz/dict/peer_request.dict) ;;
        scenario_file) dict=(-dict=fuzz/dict/scenario.dict) ;;
    esac
    mkdir -p fuzz/artifacts/"$target" "$fuzz_scratch/$target"
    echo "--- $target: replay of fuzz/corpus/$target ($(find fuzz/corpus/"$target" -type f | wc -l) inputs), then 10 s of random inputs"
    fuzz_run "$target-replay" "$binary" -runs=0 -artifact_prefix=fuzz/artifacts/"$target"/ fuzz/corpus/"$target"
    fuzz_run "$target-run" "$binary" -max_total_time=10 -seed=1 -artifact_prefix=fuzz/artifacts/"$target"/ \
        "${dict[@]}" "$fuzz_scratch/$target" fuzz/corpus/"$target"
done

echo "==> API docs (built beside the fuzz targets): cargo doc without a warning, every public item documented"
if ! wait "$docs_pid"; then
    cat "$docs_log"
    echo "FAILED: cargo doc gave a warning (the workspace lints ask for every public item's doc)"
    exit 1
fi
echo "ok"

echo "==> differential_session finds a deliberate divergence from libsignal-c (a MAC check that skips its"
echo "    last byte, only under --cfg switchboard_inject_divergence, in a build of its own) from the seeds"
echo "    that hold no tampering, with coverage feedback (the instrumentation cargo-fuzz's -s none adds)"
if ! wait "$divergence_build_pid"; then
    cat "$divergence_build_log"
    echo "FAILED: building differential_session with the deliberate divergence"
    exit 1
fi
divergence_corpus="$fuzz_scratch/inject-divergence"
mkdir -p "$divergence_corpus"
cp fuzz/corpus/differential_session/seed-conversation-* fuzz/corpus/differential_session/seed-out-of-order-replay-drop \
    fuzz/corpus/differential_session/seed-session-resets "$divergence_corpus"/
started=$SECONDS
if ./fuzz/target/inject-divergence/"$host"/release/differential_session -max_total_time=600 -seed=1 \
    -artifact_prefix="$divergence_corpus/" "$divergence_corpus" >"$fuzz_scratch/inject-divergence.log" 2>&1; then
    tail -20 "$fuzz_scratch/inject-divergence.log"
    echo "FAILED: the deliberate divergence was not found in 600 s"
    exit 1
fi
if ! grep -q "disagree" "$fuzz_scratch/inject-divergence.log"; then
    tail -40 "$fuzz_scratch/inject-divergence.log"
    echo "FAILED: differential_session stopped, but not on the deliberate divergence"
    exit 1
fi
echo "found in $((SECONDS - started)) s: $(grep -m1 -o 'step [0-9]*: the implementations disagree[^{]*' "$fuzz_scratch/inject-divergence.log")"
