#!/usr/bin/env python3
"""Generates a recommendation data set with real structure, for `wxshop recommend eval` and the
peer comparison (scripts/peer_implicit.py): power-law item popularity, merchants of very different
sizes, buyers with hidden tastes over categories, sessions of related views, carts, purchases and
repeat purchases. Writes train.csv, test.csv (each buyer's last 20% of events by time) and items.csv.

    python3 scripts/gen_rec_data.py OUT_DIR [--users 3000] [--items 4000] [--seed 7]
"""
import argparse, csv, math, os, random

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--users", type=int, default=3000)
ap.add_argument("--items", type=int, default=4000)
ap.add_argument("--merchants", type=int, default=200)
ap.add_argument("--categories", type=int, default=40)
ap.add_argument("--seed", type=int, default=7)
a = ap.parse_args()
rng = random.Random(a.seed)
os.makedirs(a.out, exist_ok=True)

# Merchants by Zipf size; items draw a merchant by size, a category, a price and a popularity.
msize = [1.0 / (m + 1) ** 1.1 for m in range(a.merchants)]
items = []
by_cat = [[] for _ in range(a.categories)]
for i in range(a.items):
    m = rng.choices(range(a.merchants), weights=msize)[0]
    c = rng.randrange(a.categories)
    pop = 1.0 / (rng.random() * 50 + 1) ** 1.5 * (2.0 if m < 10 else 1.0)
    price = int(rng.lognormvariate(8.5, 0.8))
    items.append((f"i{i}", f"m{m}", f"c{c}", price, pop))
    by_cat[c].append(i)
# Within a category, items form small "styles" of related products (sessions stay inside one).
styles = {}
for c, its in enumerate(by_cat):
    for j, i in enumerate(its):
        styles.setdefault((c, j % 6), []).append(i)

t0 = 1_700_000_000
rows = []
for u in range(a.users):
    k = rng.choice([1, 2, 2, 3])
    tastes = rng.sample(range(a.categories), k)
    style_of = {c: rng.randrange(6) for c in tastes}
    n_sessions = max(1, int(rng.paretovariate(1.5)))
    t = t0 + rng.randrange(0, 60 * 86400)
    bought = []
    for s in range(min(n_sessions, 12)):
        c = rng.choice(tastes)
        pool = styles[(c, style_of[c])] if rng.random() < 0.7 else by_cat[c]
        if not pool:
            continue
        w = [items[i][4] for i in pool]
        for _ in range(rng.randint(2, 8)):
            i = rng.choices(pool, weights=w)[0]
            t += rng.randint(20, 600)
            rows.append((f"u{u}", items[i][0], t, "view"))
            r = rng.random()
            if r < 0.25:
                rows.append((f"u{u}", items[i][0], t + 5, "click"))
            if r < 0.12:
                rows.append((f"u{u}", items[i][0], t + 30, "cart"))
            if r < 0.06:
                rows.append((f"u{u}", items[i][0], t + 90, "buy"))
                bought.append(i)
        if bought and rng.random() < 0.2:  # repeat purchase
            i = rng.choice(bought)
            rows.append((f"u{u}", items[i][0], t + 3600, "buy"))
        t += rng.randint(86400, 10 * 86400)

by_user = {}
for r in rows:
    by_user.setdefault(r[0], []).append(r)
train, test = [], []
for u, rs in by_user.items():
    rs.sort(key=lambda r: r[2])
    cut = int(len(rs) * 0.8)
    if cut == 0 or cut == len(rs):
        train.extend(rs)
    else:
        train.extend(rs[:cut])
        test.extend(rs[cut:])
for name, data in (("train.csv", train), ("test.csv", test)):
    with open(os.path.join(a.out, name), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "ts", "event"])
        w.writerows(data)
with open(os.path.join(a.out, "items.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["item", "merchant", "category", "price"])
    w.writerows((i[0], i[1], i[2], i[3]) for i in items)
print(f"{len(train)} train, {len(test)} test events, {a.users} users, {a.items} items")
