#!/usr/bin/env bash
# Four storefront instances on one PostgreSQL schema and one Redis, one shared emulator, and a load
# generator spread over them; then checks: one access_token issuance per expiry across all processes,
# no oversell, every payment notification applied once, no lost order. Exits non-zero on a violation.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 scripts/multi-instance.sh
#
# Knobs: INSTANCES (4), BUYERS (24), ATTEMPTS (3), SECS (60), BASE_PORT (3700), PROFILE (release|debug).
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
INSTANCES=${INSTANCES:-4}
BUYERS=${BUYERS:-24}
ATTEMPTS=${ATTEMPTS:-3}
SECS=${SECS:-60}
BASE_PORT=${BASE_PORT:-3700}
PROFILE=${PROFILE:-release}
RUN=$(date +%s)_$$
SCHEMA=multi_$RUN
PREFIX="wxshop-multi:$RUN:"
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  [ -n "${KEEP_LOGS:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

flag=(); [ "$PROFILE" = release ] && flag=(--release)
echo "== building ($PROFILE)"
cargo build -q "${flag[@]}" --features redis,postgres --bin wxshop --example storefront --example loadgen
BIN=target/$PROFILE

wait_http() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

EMU_PORT=$((BASE_PORT - 1))
EMU=http://127.0.0.1:$EMU_PORT
"$BIN/wxshop" emulator --addr "127.0.0.1:$EMU_PORT" >"$WORK/emulator.log" 2>&1 &
PIDS+=($!)
wait_http "$EMU/__emulator/counters"
curl -sf -XPOST "$EMU/__emulator/pay/config" -H 'content-type: application/json' -d '{"time_factor":100}' >/dev/null

start_instance() { # $1 = index
  local port=$((BASE_PORT + $1))
  PORT=$port WXSHOP_EMULATOR_URL=$EMU DATABASE_URL=$DATABASE_URL MARKET_PG_SCHEMA=$SCHEMA \
    REDIS_URL=$REDIS_URL REDIS_PREFIX=$PREFIX STOREFRONT_ADMIN_TOKEN=multi RUST_LOG=${RUST_LOG:-warn} \
    "$BIN/examples/storefront" >>"$WORK/storefront-$1.log" 2>&1 &
  echo $!
}
URLS=()
echo "== starting $INSTANCES storefronts on schema $SCHEMA, Redis prefix $PREFIX"
for i in $(seq 0 $((INSTANCES - 1))); do
  PIDS+=("$(start_instance "$i")")
  URLS+=("http://127.0.0.1:$((BASE_PORT + i))")
  # The first instance migrates and seeds; the others start on the ready schema.
  wait_http "${URLS[$i]}/api/products"
done
INSTANCE_LIST=$(IFS=,; echo "${URLS[*]}")

q() { PGOPTIONS="-c search_path=$SCHEMA" psql -qtA "$DATABASE_URL" -c "$1"; }
# Initial stock of every SKU, to check no unit is sold twice.
q "SELECT sku_id, on_hand FROM inventory ORDER BY sku_id" >"$WORK/stock0"

echo "== load: $BUYERS buyers x $ATTEMPTS checkouts over $INSTANCES instances (max ${SECS}s)"
"$BIN/examples/loadgen" --emulator "$EMU" --instances "$INSTANCE_LIST" --buyers "$BUYERS" \
  --attempts "$ATTEMPTS" --secs "$SECS" --paid "$WORK/paid" >"$WORK/summary.json"
cat "$WORK/summary.json"
# Let the last notifications land.
sleep "${SETTLE:-3}"
export SCHEMA DATABASE_URL EMU WORK
scripts/check-market.sh
