#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, seeded from the repo corpus (node/tests/corpus):
#   node/fuzz/run.sh resp_request|admin_body|peer_reply [SECONDS]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to a
# scratch corpus under target/; a crash is saved under node/fuzz/artifacts/ (add it to the repo
# corpus as a seed once fixed).
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?target: resp_request, admin_body or peer_reply}
secs=${2:-60}
seeds=target/seeds/$target
rm -rf "$seeds" && mkdir -p "$seeds"
corpus=../tests/corpus
case $target in
  resp_request|peer_reply)
    # The first byte of a resp_request input picks the read size.
    for f in "$corpus"/resp/*.resp; do
      { printf '\x07'; cat "$f"; } >"$seeds/$(basename "$f")"
    done ;;
  admin_body)
    # The first byte picks the request type, in the order of fuzz_targets/admin_body.rs.
    i=0
    for kind in caller placement fence unfence drop checksum pull snapshot; do
      for f in "$corpus"/admin/"$kind".*.json; do
        { printf "\\x0$i"; cat "$f"; } >"$seeds/$(basename "$f")"
      done
      i=$((i + 1))
    done ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p target/corpus/"$target"
exec cargo +nightly fuzz run --fuzz-dir . "$target" target/corpus/"$target" "$seeds" -- \
  -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=2048
