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
# One command each for the connection core's before/after figures (both
# placements, pinned to one CPU and unpinned, in the same run; add
# --pinned or --unpinned for one):
#
#   scripts/compare.sh ref --quick     # reference table: framerpc against
#                                      # plain TCP and plain tungstenite,
#                                      # with one shared client and the
#                                      # server's peak RSS in a 16 MiB echo
#   scripts/compare.sh scale --quick   # 1,000 idle connections, 256 busy
#                                      # clients, memory after 16 clients
#                                      # echo 16 MiB at once
#   scripts/compare.sh scale --quick raw-tcp framerpc-tcp tarpc
#
# `--quick` keeps each of ref and scale under about 2 minutes once built.
# scale needs about 5,000 open files: the binary raises its own soft limit
# (setrlimit, inherited by its server children) up to the hard limit, and
# reports both; if the hard limit is lower, raise it first (ulimit -Hn).
#
# compare/ is a workspace of its own (target dir compare/target): the root
# crate's build and tests never compile tokio, tarpc or jsonrpsee. The
# first build takes a few minutes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/compare/Cargo.toml"
exec "$root/compare/target/release/compare" "$@"
