#!/usr/bin/env bash
# The full soak (tests/soak.rs, soak_full) in release: 32 clients, mixed
# calls over raw TCP and WebSocket, clients killed at random moments; then
# no leaked threads, handles or permits and no memory growth.
#
#   scripts/soak.sh                              # 1,000,000 calls
#   FRAMERPC_SOAK_CALLS=100000 scripts/soak.sh   # scaled
#
# Prints the tally and one "SOAK SUMMARY" line; exits non-zero on any wrong
# answer, unexpected error, leak or growth.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --all-features --test soak -- soak_full --ignored --nocapture --test-threads=1 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo
grep 'SOAK SUMMARY' "$log" || echo "SOAK SUMMARY missing: the soak did not finish"
exit "$rc"
