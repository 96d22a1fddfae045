#!/usr/bin/env bash
# Crash safety: two storefront instances on one PostgreSQL schema and one Redis (the setup of
# multi-instance.sh); while the load generator runs, a random instance is SIGKILLed at random moments
# (mid checkout, payment or notification handling) and restarted with the same environment. After the
# load, one more restart reconciles lost notifications at startup (querying WeChat Pay), then
# check-market.sh runs plus: no partial order, every group's orders and payment agree with its status,
# the governance ledger balanced. Exits non-zero on a violation; loopback only, bounded in time.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 scripts/crash-safety.sh
#
# Knobs: INSTANCES (2), KILLS (6), BUYERS (16), ATTEMPTS (3) per round of load, SECS (60) in all,
# RESTOCK (400 units per SKU), BASE_PORT (3800), PROFILE (release|debug), SEED (random).
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
INSTANCES=${INSTANCES:-2}
KILLS=${KILLS:-6}
BUYERS=${BUYERS:-16}
ATTEMPTS=${ATTEMPTS:-3}
SECS=${SECS:-60}
BASE_PORT=${BASE_PORT:-3800}
PROFILE=${PROFILE:-release}
SEED=${SEED:-$$}
RESTOCK=${RESTOCK:-400}
RANDOM=$SEED
RUN=$(date +%s)_$$
SCHEMA=crash_$RUN
PREFIX="wxshop-crash:$RUN:"
WORK=$(mktemp -d)
EMU_PID=""
LOAD_PID=""
INST=() # pid per instance

cleanup() {
  for p in "${INST[@]}" $EMU_PID $LOAD_PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  [ -n "${KEEP_LOGS:-}" ] && echo "logs kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

flag=(); [ "$PROFILE" = release ] && flag=(--release)
echo "== building ($PROFILE), seed $SEED"
cargo build -q "${flag[@]}" --features redis,postgres --bin wxshop --example storefront --example loadgen
BIN=target/$PROFILE

wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

EMU_PORT=$((BASE_PORT - 1))
EMU=http://127.0.0.1:$EMU_PORT
"$BIN/wxshop" emulator --addr "127.0.0.1:$EMU_PORT" >"$WORK/emulator.log" 2>&1 &
EMU_PID=$!
wait_http "$EMU/__emulator/counters"
curl -sf -XPOST "$EMU/__emulator/pay/config" -H 'content-type: application/json' -d '{"time_factor":100}' >/dev/null

start_instance() { # $1 = index; same environment on every (re)start
  local port=$((BASE_PORT + $1))
  PORT=$port WXSHOP_EMULATOR_URL=$EMU DATABASE_URL=$DATABASE_URL MARKET_PG_SCHEMA=$SCHEMA \
    REDIS_URL=$REDIS_URL REDIS_PREFIX=$PREFIX STOREFRONT_ADMIN_TOKEN=crash RUST_LOG=${RUST_LOG:-warn} \
    "$BIN/examples/storefront" >>"$WORK/storefront-$1.log" 2>&1 &
  INST[$1]=$!
}
URLS=()
echo "== starting $INSTANCES storefronts on schema $SCHEMA, Redis prefix $PREFIX"
for i in $(seq 0 $((INSTANCES - 1))); do
  start_instance "$i"
  URLS+=("http://127.0.0.1:$((BASE_PORT + i))")
  wait_http "${URLS[$i]}/api/products" # the first one migrates and seeds
done
INSTANCE_LIST=$(IFS=,; echo "${URLS[*]}")

q() { PGOPTIONS="-c search_path=$SCHEMA" psql -qtA "$DATABASE_URL" -c "$1"; }
# Restock through the merchant API, so the load lasts long enough to be killed in the middle of it.
# Each merchant gets an owner key from the platform (the bootstrap token); the stocktake overwrites (If-Match: *).
q "SELECT merchant_id, sku_id FROM inventory ORDER BY sku_id" | while IFS='|' read -r mid sku; do
  key=$(curl -sf -XPOST "${URLS[0]}/admin/merchants/$mid/keys" -H 'authorization: Bearer crash' \
    -H 'content-type: application/json' -d '{"label":"crash-safety"}' | sed 's/.*"secret":"\([^"]*\)".*/\1/')
  curl -sf -XPUT "${URLS[0]}/api/merchant/skus/$sku/stock" -H "x-merchant-key: $key" -H 'if-match: *' \
    -H 'content-type: application/json' -d "{\"on_hand\":$RESTOCK}" >/dev/null
done
q "SELECT sku_id, on_hand FROM inventory ORDER BY sku_id" >"$WORK/stock0"

echo "== load: rounds of $BUYERS buyers x $ATTEMPTS checkouts until $KILLS SIGKILLs are done (max ${SECS}s)"
# Rounds of load (new buyers each round) in the background, until the kills are done or time is up.
touch "$WORK/kills-done"; rm -f "$WORK/kills-done"
(
  deadline=$((SECONDS + SECS)); r=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    r=$((r + 1))
    "$BIN/examples/loadgen" --emulator "$EMU" --instances "$INSTANCE_LIST" --buyers "$BUYERS" \
      --attempts "$ATTEMPTS" --secs "$((deadline - SECONDS + 1))" --user-prefix "r$r" --paid "$WORK/paid.$r" \
      >"$WORK/summary.$r.json" 2>>"$WORK/loadgen.log" || { rm -f "$WORK/summary.$r.json"; sleep 0.2; } # hit a dead instance at start
    [ -e "$WORK/kills-done" ] && break
  done
) &
LOAD_PID=$!
kills=0
while [ "$kills" -lt "$KILLS" ] && kill -0 "$LOAD_PID" 2>/dev/null; do
  sleep "$((RANDOM % 2)).$((RANDOM % 10))" # 0.0–1.9 s
  kill -0 "$LOAD_PID" 2>/dev/null || break
  i=$((RANDOM % INSTANCES))
  kill -9 "${INST[$i]}" 2>/dev/null || true
  wait "${INST[$i]}" 2>/dev/null || true
  kills=$((kills + 1))
  echo "   SIGKILL instance $i (pid ${INST[$i]}), restart #$kills"
  sleep "0.$((RANDOM % 10))" # down for a moment: requests and notifications to it fail
  start_instance "$i"
  wait_http "${URLS[$i]}/api/products"
done
touch "$WORK/kills-done"
wait "$LOAD_PID" || { echo "load generator failed" >&2; exit 1; }
LOAD_PID=""
cat "$WORK"/paid.* >"$WORK/paid" 2>/dev/null || : >"$WORK/paid"
jq -sc '{rounds: length, checkouts: (map(.checkouts) | add), payments: (map(.payments) | add),
         checkout_errors: (map(.checkout_errors) | add), payment_errors: (map(.payment_errors) | add),
         out_of_stock: (map(.out_of_stock) | add)}' "$WORK"/summary.*.json | tee "$WORK/summary.json"
[ "$kills" -ge "$KILLS" ] || { echo "FAIL only $kills of $KILLS kills happened during the load" >&2; exit 1; }

# One more restart: a storefront reconciles pending payments at startup, so notifications lost to
# the kills are recovered by querying WeChat Pay (the emulator).
before=$(grep -c "reconciled at startup" "$WORK/storefront-0.log" || true)
kill -9 "${INST[0]}"; wait "${INST[0]}" 2>/dev/null || true
start_instance 0
wait_http "${URLS[0]}/api/products"
for _ in $(seq 1 100); do
  [ "$(grep -c "reconciled at startup" "$WORK/storefront-0.log" || true)" -gt "$before" ] && break
  sleep 0.1
done
grep "reconciled at startup" "$WORK/storefront-0.log" | tail -n 1
sleep "${SETTLE:-3}" # timers fired after the commit (refunds, closes) settle

export SCHEMA DATABASE_URL EMU WORK
fail=0
scripts/check-market.sh || fail=1

check() { # name, ok(0/1), detail
  if [ "$2" = 1 ]; then echo "ok   $1: $3"; else echo "FAIL $1: $3"; fail=1; fi
}
zero() { [ "$1" = 0 ] && echo 1 || echo 0; }
# No partial order: every order has lines, every group has all its orders and its payment.
n=$(q "SELECT count(*) FROM merchant_orders o WHERE NOT EXISTS
       (SELECT 1 FROM order_lines l WHERE l.merchant_id = o.merchant_id AND l.order_id = o.order_id)")
check "no order without lines" "$(zero "$n")" "$n orders without lines"
n=$(q "SELECT count(*) FROM checkout_groups g WHERE g.merchant_count <>
       (SELECT count(*) FROM merchant_orders o WHERE o.group_id = g.group_id)
       OR NOT EXISTS (SELECT 1 FROM payments p WHERE p.group_id = g.group_id)")
check "no group without its orders and payment" "$(zero "$n")" "$n groups incomplete"
# Every group's orders and payment agree with its status.
n=$(q "SELECT count(*) FROM checkout_groups g JOIN merchant_orders o ON o.group_id = g.group_id WHERE
       (g.status = 'AwaitingPayment' AND o.status <> 'PendingPayment')
    OR (g.status IN ('Expired','Cancelled') AND o.status <> 'Cancelled')
    OR (g.status = 'Paid' AND o.status = 'PendingPayment')")
check "orders agree with their group" "$(zero "$n")" "$n orders disagree"
n=$(q "SELECT count(*) FROM checkout_groups g JOIN payments p ON p.group_id = g.group_id WHERE
       (g.status = 'Paid') <> (p.status IN ('Paid','PartiallyRefunded','Refunded'))")
check "payments agree with their group" "$(zero "$n")" "$n payments disagree"
# Reservations: none still active for a group that is no longer awaiting payment.
n=$(q "SELECT count(*) FROM reservations r JOIN checkout_groups g ON g.group_id = r.group_id
       WHERE r.status = 'Active' AND g.status <> 'AwaitingPayment'")
check "no reservation left behind" "$(zero "$n")" "$n active reservations of settled groups"
# The governance ledger, when it has entries: every transaction sums to zero, balances match entries.
txns=$(q "SELECT count(*) FROM gov_ledger_txns" 2>/dev/null || echo 0)
if [ "${txns:-0}" -gt 0 ]; then
  n=$(q "SELECT count(*) FROM (SELECT txn_id FROM gov_ledger_entries GROUP BY txn_id HAVING sum(amount_fen) <> 0) t")
  m=$(q "SELECT count(*) FROM gov_balances b WHERE b.balance_fen <>
         COALESCE((SELECT sum(e.amount_fen) FROM gov_ledger_entries e WHERE e.account = b.account), 0)")
  check "ledger balanced" "$([ "$n" = 0 ] && [ "$m" = 0 ] && echo 1 || echo 0)" \
    "$txns transactions, $n unbalanced, $m balances off their entries"
else
  echo "ok   ledger balanced: no ledger entries (governance inactive)"
fi
echo "== $kills SIGKILLs + 1 restart; $( [ "$fail" = 0 ] && echo "all checks passed" || echo "VIOLATIONS" )"
exit $fail
