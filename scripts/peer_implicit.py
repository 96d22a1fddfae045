#!/usr/bin/env python3
"""The peer baseline for `wxshop recommend eval`: the Python `implicit` library's ALS and BM25 item-kNN
on the same split, with the same full ranking and the same recall@k (hits / |test items|, users of TEST
also in TRAIN, their TRAIN items excluded). Run beside the evaluator in one session:

    python3 scripts/peer_implicit.py TRAIN.csv TEST.csv [--k 20]
"""
import argparse, csv, json, time
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.nearest_neighbours import BM25Recommender

W = {"view": 1.0, "click": 2.0, "share": 3.0, "cart": 4.0, "buy": 8.0}
ap = argparse.ArgumentParser()
ap.add_argument("train"); ap.add_argument("test"); ap.add_argument("--k", type=int, default=20)
a = ap.parse_args()
users, items, rows = {}, {}, {}
for r in csv.DictReader(open(a.train)):
    u = users.setdefault(r["user"], len(users)); i = items.setdefault(r["item"], len(items))
    rows[(u, i)] = rows.get((u, i), 0.0) + W[r["event"].lower()]
test = {}
for r in csv.DictReader(open(a.test)):
    if r["user"] in users:
        test.setdefault(users[r["user"]], set()).add(r["item"])
ui = sp.csr_matrix((list(rows.values()), ([k[0] for k in rows], [k[1] for k in rows])), shape=(len(users), len(items)))
ids = {v: k for k, v in items.items()}
out = {}
for name, model, data in (
    ("implicit_als", AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, random_state=42), ui.copy()),
    ("implicit_bm25", BM25Recommender(K=100), ui.copy()),
):
    t = time.time(); model.fit(data, show_progress=False); fit_ms = (time.time() - t) * 1e3
    us = np.array(sorted(test))
    recs, _ = model.recommend(us, ui[us], N=a.k, filter_already_liked_items=True)
    recall = hits = 0.0
    for u, rec in zip(us, recs):
        got = {ids[int(i)] for i in rec if i >= 0}
        h = len(got & test[u]); recall += h / len(test[u]); hits += h > 0
    out[name] = {"recall@k": recall / len(us), "hit_rate@k": hits / len(us), "users": len(us), "fit_ms": fit_ms}
print(json.dumps(out))
