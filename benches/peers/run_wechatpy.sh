#!/usr/bin/env bash
# wechatpy 1.8.18 beside wxshop on the same 1 KB secure-mode push, alternating, both pinned to core 0.
# Prints each round's ns/op and the median ratio. The venv lives under /tmp, never in the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WECHATPY_VENV:-/tmp/wechatpy-1.8.18}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet wechatpy==1.8.18 cryptography
fi
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/wxshop-peers"
fixture="$("$bin" push-fixture)"
py=() rs=()
for i in 1 2 3; do
  rs+=("$(taskset -c 0 "$bin" push-ns)")
  py+=("$(echo "$fixture" | taskset -c 0 "$venv/bin/python" "$here/wechatpy_push.py")")
  echo "round $i: wxshop ${rs[-1]} ns/op, wechatpy ${py[-1]} ns/op"
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
r="$(median "${rs[@]}")"; p="$(median "${py[@]}")"
awk -v r="$r" -v p="$p" 'BEGIN { printf "median: wxshop %.0f ns/op (%.0f/s), wechatpy %.0f ns/op (%.0f/s), wxshop %.1fx\n", r, 1e9/r, p, 1e9/p, p/r }'
