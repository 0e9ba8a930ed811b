#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz.sh [SECONDS]
#
# Installs cargo-fuzz if it is missing. On a stable toolchain the nightly
# flags cargo-fuzz needs (-Zsanitizer) are unlocked with RUSTC_BOOTSTRAP=1.
# Each target starts from its seeds in tests/fuzz_corpus/<target>/ and
# keeps what it learns in fuzz/corpus/<target>/ (not committed). A crash
# lands in fuzz/artifacts/<target>/; minimize it with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> artifacts/<target>/crash-...)
# and copy it to tests/fuzz_corpus/<target>/, where tests/fuzz_regressions.rs
# replays it in the normal test suite.
# CARGO_TARGET_DIR defaults to fuzz/target.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
root=$PWD

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/fuzz/target}

cd fuzz
targets=$(cargo fuzz list) || exit 1
mkdir -p logs
summary=()
failed=0
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "== $t: ${secs}s"
    cargo fuzz run "$t" "corpus/$t" "$root/tests/fuzz_corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        >"logs/$t.log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1)
    if [ $rc -eq 0 ]; then
        summary+=("$t: ok, ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l) files")
    else
        failed=1
        summary+=("$t: FAILED (exit $rc), see fuzz/logs/$t.log and fuzz/artifacts/$t/")
        grep -m1 -A30 -E 'panicked|ERROR: libFuzzer|deadly signal' "logs/$t.log" || tail -30 "logs/$t.log"
    fi
done
echo
printf '%s\n' "${summary[@]}"
exit $failed
