#!/usr/bin/env bash
# The invariants both multi-instance.sh and crash-safety.sh check, over the schema $SCHEMA of
# $DATABASE_URL, the emulator $EMU, and the files in $WORK (stock0: initial stock; paid: group ids
# the cashier accepted; summary.json). Prints one line per check; exits 1 on any violation.
set -uo pipefail
q() { PGOPTIONS="-c search_path=$SCHEMA" psql -qtA "$DATABASE_URL" -c "$1"; }
fail=0
check() { # name, ok(0/1), detail
  if [ "$2" = 1 ]; then echo "ok   $1: $3"; else echo "FAIL $1: $3"; fail=1; fi
}

issued=$(curl -sf "$EMU/__emulator/counters" | jq -r '."token.issued" // 0')
check "access_token issued once per expiry across all instances" $([ "$issued" = 1 ] && echo 1 || echo 0) "token.issued=$issued"

# No oversell: stock never negative, reservations within stock, and initial - sold (paid) = on hand
# minus what unpaid orders still reserve, per SKU.
bad_rows=$(q "SELECT count(*) FROM inventory WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand")
check "inventory within bounds" $([ "$bad_rows" = 0 ] && echo 1 || echo 0) "$bad_rows rows out of bounds"
q "SELECT i.sku_id, i.on_hand, i.reserved,
          COALESCE((SELECT sum(l.qty) FROM order_lines l JOIN merchant_orders o USING (merchant_id, order_id)
                    WHERE l.sku_id = i.sku_id AND o.status NOT IN ('PendingPayment','Cancelled')), 0),
          COALESCE((SELECT sum(l.qty) FROM order_lines l JOIN merchant_orders o USING (merchant_id, order_id)
                    WHERE l.sku_id = i.sku_id AND o.status = 'PendingPayment'), 0)
   FROM inventory i ORDER BY i.sku_id" >"$WORK/stock1"
stock_ok=1; stock_detail=""
while IFS='|' read -r sku on_hand reserved sold pending; do
  init=$(awk -F'|' -v s="$sku" '$1==s{print $2}' "$WORK/stock0")
  if [ "$((init - sold))" != "$on_hand" ] || [ "$reserved" != "$pending" ]; then
    stock_ok=0; stock_detail+=" $sku: initial $init sold $sold on_hand $on_hand reserved $reserved pending $pending;"
  fi
  [ "$sold" -le "$init" ] || { stock_ok=0; stock_detail+=" $sku oversold;"; }
done <"$WORK/stock1"
total_sold=$(awk -F'|' '{s+=$4} END{print s+0}' "$WORK/stock1")
check "no oversell, stock consistent" $stock_ok "${stock_detail:-$total_sold units sold, every SKU: initial - sold = on hand, reserved = unpaid}"

# Every notification applied once: one Paid transition per paid order in the audit log.
dups=$(q "SELECT count(*) FROM (SELECT aggregate_id FROM audit_log WHERE to_state = 'Paid' AND aggregate_type LIKE '%order%'
          GROUP BY aggregate_id HAVING count(*) > 1) d")
paid_orders=$(q "SELECT count(*) FROM merchant_orders WHERE status NOT IN ('PendingPayment','Cancelled')")
transitions=$(q "SELECT count(*) FROM audit_log WHERE to_state = 'Paid' AND aggregate_type LIKE '%order%'")
check "every payment applied once" $([ "$dups" = 0 ] && [ "$transitions" = "$paid_orders" ] && echo 1 || echo 0) \
  "$transitions Paid transitions for $paid_orders paid orders, $dups orders with more than one"

# No lost order: every group the cashier accepted exists and is paid.
sort -u "$WORK/paid" >"$WORK/paid.sorted"
q "SELECT group_id FROM checkout_groups WHERE status = 'Paid' ORDER BY 1" | sort -u >"$WORK/db_paid"
lost=$(comm -23 "$WORK/paid.sorted" "$WORK/db_paid" | wc -l)
check "no lost order" $([ "$lost" = 0 ] && echo 1 || echo 0) "$(wc -l <"$WORK/paid.sorted") paid by buyers, $(wc -l <"$WORK/db_paid") Paid in the database, $lost missing"
exit $fail
