#!/usr/bin/python3
"""Print shape, nnz and a checksum of every matrix of the reference splits
(shared/reference/data.py) on MovieLens-100K, for comparing with the C splits
(model/split.c; tests/test_split.c computes the same checksum).

    /usr/bin/python3 tools/check_split.py [--data u.data] [--c] SEED...

With --synthetic the data are the small generated set of tests/test_split.c
(synthetic(): 2000 ratings, 60 skewed users, duplicates; strong protocol with
threshold 4 and 5 held-out users) instead of ML-100K.

Checksum of a CSR matrix: sum over stored entries (r, c) of
splitmix64((r << 32) | c), modulo 2**64 -- order-free, but it changes when any
entry moves.  With --c the lines are printed as C initializers for the table
in tests/test_split.c.  Run by hand; not part of ctest.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.environ.get("VG_REFERENCE", os.path.join(HERE, "..", "..", "shared", "reference"))
if not os.path.isdir(REF):
    REF = "/work/shared/reference"
sys.path.insert(0, REF)
import data  # noqa: E402  (shared/reference/data.py)

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def checksum(X):
    X = X.tocsr()
    rows = np.repeat(np.arange(X.shape[0], dtype=np.uint64), np.diff(X.indptr))
    cols = X.indices.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = splitmix64((rows << np.uint64(32)) | cols)
        return int(h.sum(dtype=np.uint64)) & 0xFFFFFFFFFFFFFFFF


def synthetic(n=2000):
    """The generator of tests/test_split.c (64-bit LCG; keep them in step)."""
    x = 12345
    mask = (1 << 64) - 1
    def nxt():
        nonlocal x
        x = (x * 6364136223846793005 + 1442695040888963407) & mask
        return x >> 33
    u, i, r = [], [], []
    for _ in range(n):
        a = nxt() % 60
        b = nxt() % 60
        u.append(100 + 3 * min(a, b))
        i.append(7 + 2 * (nxt() % 90))
        r.append(float(1 + nxt() % 5))
    return np.array(u, np.int64), np.array(i, np.int64), np.array(r, np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--data", default="/work/shared/data/ml-100k/u.data")
    ap.add_argument("--c", action="store_true", help="print C initializers")
    ap.add_argument("--synthetic", action="store_true", help="the generated set of test_split.c")
    a = ap.parse_args()
    data.ML100K = a.data
    held = 100
    if a.synthetic:
        syn = synthetic()
        data.load_raw = lambda ds: syn
        held = 5
    for seed in a.seeds:
        w = data.weak_split("ml-100k", seed)
        s = data.strong_split("ml-100k", seed, threshold=4.0, n_heldout=held)
        mats = [("weak", k, w[k]) for k in ("train_fit", "val", "train_full", "test")]
        mats += [("strong", k, s[k]) for k in ("train", "val_in", "val_out", "test_in", "test_out")]
        for proto, name, X in mats:
            r, c = X.shape
            if a.c:
                print('    {%d, "%s", "%s", %d, %d, %d, 0x%016xULL},' % (seed, proto, name, r, c, X.nnz,
                                                                          checksum(X)))
            else:
                print("seed %d %-6s %-10s %4d x %4d nnz %6d checksum %016x" % (seed, proto, name, r, c,
                                                                                X.nnz, checksum(X)))


if __name__ == "__main__":
    main()
