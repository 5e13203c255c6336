#!/usr/bin/env bash
# Checks that the cores link no I/O (docs/ARCHITECTURE.md, "Sans-IO cores and their drivers"): no core package, and not the fuzz
# crate, has tokio, rustls, tokio-rustls, redb or a database client among its normal dependencies,
# direct or indirect. Dev-dependencies may pull drivers (a core's tests may run against a server);
# build-dependencies run on the build machine and are not linked.
#
# A listed core that is not (yet) a workspace package is skipped with a message; a listed core that
# exists and links one of those crates fails the check, naming the package, the crate and the path
# that pulls it in.
set -euo pipefail
cd "$(dirname "$0")/.."

CORES=(switchboard-wire switchboard-session switchboard-relay-core switchboard-client-core switchboard-harness switchboard-sim)
FORBIDDEN=(tokio rustls tokio-rustls redb tokio-postgres sqlx)

# Workspace package names. In `cargo metadata`, a package entry starts with its name then its version
# ("name":"…","version":"…"), a dependency entry with its name then its source: only packages match.
members="$(cargo metadata --format-version 1 --no-deps --locked |
    grep -o '"name":"[^"]*","version":"' | sed 's/^"name":"\([^"]*\)".*/\1/')"

failed=0

# check LABEL CARGO-TREE-ARGS...: fails if the normal-dependency tree holds a forbidden crate.
check() {
    local label="$1"
    shift
    local crates found=()
    crates="$(cargo tree "$@" -e normal --prefix none --locked | awk '{print $1}' | sort -u)"
    for crate in "${FORBIDDEN[@]}"; do
        if grep -Fxq "$crate" <<<"$crates"; then
            found+=("$crate")
        fi
    done
    if [ "${#found[@]}" -eq 0 ]; then
        echo "ok: $label links none of: ${FORBIDDEN[*]}"
        return
    fi
    failed=1
    for crate in "${found[@]}"; do
        echo "FAIL: $label links $crate (a core must link no tokio, rustls, redb or database client); pulled in by:"
        cargo tree "$@" -e normal --locked -i "$crate" | sed 's/^/    /'
    done
}

for package in "${CORES[@]}"; do
    if ! grep -Fxq "$package" <<<"$members"; then
        echo "skip: $package is not a package of this workspace (yet)"
        continue
    fi
    check "$package" -p "$package"
done
check "fuzz/ (switchboard-fuzz)" --manifest-path fuzz/Cargo.toml

# No bug switches in the product: the deliberate defects the simulator's tests inject exist only
# under `--cfg switchboard_inject_bugs`, and the one the differential fuzz target must find only
# under `--cfg switchboard_inject_divergence` (which refuses to compile without `--cfg fuzzing`);
# nothing in the repository sets either for a normal build;
# the shipped binary's dependency graph enables no feature of that kind.
features="$(cargo tree -p switchboard -e normal,features --prefix none --locked)"
if grep -Eqi 'inject|bug' <<<"$features"; then
    echo "FAIL: the switchboard binary's dependencies enable a bug feature:"
    grep -Ei 'inject|bug' <<<"$features" | sed 's/^/    /'
    failed=1
elif grep -rqsE 'switchboard_inject_(bugs|divergence)' .cargo/ 2>/dev/null; then
    echo "FAIL: .cargo/ sets --cfg switchboard_inject_bugs or switchboard_inject_divergence for every build"
    failed=1
else
    echo "ok: the switchboard binary's dependencies enable no bug feature ($(grep -c . <<<"$features") feature edges checked)"
fi

if [ "$failed" -ne 0 ]; then
    echo "check-cores: FAILED"
    exit 1
fi
echo "check-cores: every core links no I/O"
