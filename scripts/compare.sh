#!/usr/bin/env bash
# framerpc side by side with a plain socket, plain tungstenite, tarpc and
# jsonrpsee on 127.0.0.1: same workloads, same run, markdown table on stdout
# (progress on stderr).
#
#   scripts/compare.sh            # 5 rounds, about 5 minutes once built
#   scripts/compare.sh --quick    # 3 shorter rounds, about 1.5 minutes
#   taskset -c 0 scripts/compare.sh   # everything on one core: latency
#                                     # without cross-core wake-ups
#   scripts/compare.sh raw-tcp framerpc-tcp   # only some systems
#   scripts/compare.sh rss framerpc-tcp 20    # server RSS after each of 20
#                                             # connections echoing 16 MiB
#
# compare/ is a workspace of its own (target dir compare/target): the root
# crate's build and tests never compile tokio, tarpc or jsonrpsee. The
# first build takes a few minutes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/compare/Cargo.toml"
exec "$root/compare/target/release/compare" "$@"
