#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_arena (tests/fuzz/corpus): short programs in
the harness's input format, one per theme.  Rerun it when the format of
fuzz_arena.c changes (opcode weights, argument bytes):

    python3 tests/fuzz/make_corpus.py tests/fuzz/corpus
"""
import os
import random
import struct
import sys

MiB = 1 << 20
# First opcode byte of each operation (cumulative op_weight of fuzz_arena.c).
OPS = dict(alloc=0, calloc=50, aligned=70, realloc=95, across=120, free=132, pool_create=180,
           pool_alloc=188, pool_free=213, pool_reset=225, pool_destroy=228, create=231,
           destroy=234, reset=237, check=240, stats=246, trim=252, probe=254, handle=255)
def le16(v): return list(struct.pack('<H', v & 0xffff))
def le32(v): return list(struct.pack('<I', v & 0xffffffff))

class Prog:
    def __init__(s):
        s.b = []; s.exists = [False]*4
    def cfg(s, flags=0, name=1, limit=None):
        # b: bits0-1 flags, bits2-3 name, bits4-7: (b>>4)%6==0 -> limit
        hi = 0 if limit is not None else 1
        b = flags | (name << 2) | (hi << 4)
        out = [b]
        if limit is not None:
            out += le16((limit // (16 << 10)) - 1)  # (l % 512 + 1) * 16 KiB, bit 15 clear
        return out
    def arena(s, slot, **kw):
        if slot == 'd': return [250]
        out = [slot]
        if not s.exists[slot]:
            out += s.cfg(**kw); s.exists[slot] = True
        return out
    def size(s, n, absurd=None, over_limit=None):
        # The encodings of pick_size().
        if absurd is not None: return [252] + le16(absurd)
        if over_limit is not None: return [246] + le16(over_limit)
        if n < 256: return [0, n]
        if n <= 8192: return [150] + le16(n)
        if n <= 2 * MiB: return [200, max(13, n.bit_length()) - 13] + le32(n)
        return [235] + le32(n - 2 * MiB)
    def op(s, name, *args):
        s.b += [OPS[name]]
        for a in args: s.b += a
    def alloc(s, slot, n, **kw): s.op('alloc', s.arena(slot), s.size(n, **kw))
    def calloc(s, slot, count, n): s.op('calloc', s.arena(slot), [0, count], s.size(n))
    def calloc_ovf(s, slot, shift, i): s.op('calloc', s.arena(slot), [210, shift, i])
    def aligned(s, slot, lg, n, **kw): s.op('aligned', s.arena(slot), [lg], s.size(n, **kw))
    def aligned_bad(s, slot, j, n): s.op('aligned', s.arena(slot), [232 + j], s.size(n))
    def realloc(s, blk, slot, n, **kw): s.op('realloc', le16(blk), s.arena(slot), s.size(n, **kw))
    def across(s, blk, slot, n): s.op('across', le16(blk), s.arena(slot), s.size(n))
    def free(s, blk, via_pool=0): s.op('free', le16(blk), [via_pool])
    def pool_create(s, slot, sz_sel, size, al):
        if sz_sel == 0: sb = [0, size - 1]
        elif sz_sel == 1: sb = [200] + le16(size - 1)
        elif sz_sel == 2: sb = [240] + le32(size - 1)
        else: sb = [248 + size]  # invalid
        s.op('pool_create', s.arena(slot), [sb[0], al], sb[1:])
    def pool_alloc(s, k, n): s.op('pool_alloc', [k, n - 1])
    def pool_free(s, blk): s.op('pool_free', le16(blk))
    def pool_reset(s, k): s.op('pool_reset', [k])
    def pool_destroy(s, k): s.op('pool_destroy', [k])
    def create(s, slot, **kw): s.b += [OPS['create'], slot] + s.cfg(**kw); s.exists[slot] = True
    def destroy(s, slot): s.b += [OPS['destroy'], slot]; s.exists[slot] = False
    def reset(s, slot): s.b += [OPS['reset'], slot]
    def check(s): s.b += [OPS['check']]
    def stats(s, slot): s.op('stats', s.arena(slot))
    def trim(s, slot): s.op('trim', s.arena(slot))
    def probe(s, blk, off): s.op('probe', le16(blk), le16(off))
    # Handle operations: the opcode, then a byte that picks which one.
    def h_alloc(s, slot, n): s.op('handle', [0], s.arena(slot), s.size(n))
    def h_free(s, k): s.op('handle', [128], le16(k))
    def h_stale(s, k): s.op('handle', [192], le16(k))
    def compact(s, slot): s.op('handle', [224], s.arena(slot))
    def save(s, path):
        data = bytes(s.b)
        open(path, 'wb').write(data)
        print(path, len(data))

R = random.Random(7)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)

# 1. small churn in one arena
p = Prog()
for i in range(40):
    if R.random() < 0.6: p.alloc(0, R.choice([0, 1, 8, 15, 16, 17, 24, 100, 255, 512, 1000, 4096, 8192]))
    else: p.free(R.randrange(65536))
    if i % 10 == 9: p.stats(0)
p.check(); p.save(f'{out}/small_churn')

# 2. medium and large, realloc grow and shrink
p = Prog()
p.alloc(1, 9000); p.alloc(1, 200000); p.alloc(1, 1 * MiB + 17); p.alloc(1, 3 * MiB)
for i in range(12):
    p.realloc(R.randrange(65536), 1, R.choice([0, 40, 9000, 70000, 1 * MiB, 2 * MiB, 5 * MiB, 100]))
    if i % 4 == 3: p.stats(1); p.trim(1)
p.calloc(1, 3, 150000); p.check(); p.save(f'{out}/medium_realloc')

# 3. alignments, valid and not
p = Prog()
for lg in range(21):
    p.aligned(2, lg, R.choice([0, 1, 33, 4096, 70000]))
for j in range(8):
    p.aligned_bad(2, j, 64)
p.stats(2); p.free(3); p.free(9); p.check(); p.save(f'{out}/aligned')

# 4. pools
p = Prog()
p.pool_create(0, 0, 1, 35)      # 1 byte, align 2
p.pool_create(0, 0, 13, 37)     # 13 bytes, align 8
p.pool_create(0, 1, 3000, 49)   # 3000 bytes, align 32 KiB
p.pool_create(0, 0, 64, 0)      # align 0 -> 16
p.pool_create(0, 2, 300000, 36) # 300000 bytes, align 4
p.pool_create(0, 3, 0, 0)       # invalid size
for k in range(5): p.pool_alloc(k, 8)
for i in range(6): p.pool_free(R.randrange(65536))
p.pool_reset(1); p.stats(0); p.pool_alloc(1, 5); p.free(2, 1); p.pool_destroy(0)
p.probe(3, 5); p.check(); p.save(f'{out}/pools')

# 5. a limited arena: fill, fail, free, refill
p = Prog()
p.create(3, limit=256 << 10, name=2)
for i in range(20): p.alloc(3, R.choice([30, 3000, 20000, 50000]))
p.alloc(3, 0, absurd=0x0100)
p.alloc(3, 0, over_limit=5)  # limit + 6 bytes
p.stats(3)
for i in range(10): p.free(R.randrange(65536))
for i in range(5): p.alloc(3, 20000)
p.check(); p.save(f'{out}/limit')

# 6. across arenas and the default arena
p = Prog()
p.create(0, flags=1); p.create(1, flags=0); p.create(2, flags=2)
for slot in (0, 1, 2, 'd'): p.alloc(slot, 300); p.alloc(slot, 20000)
for i in range(16): p.across(R.randrange(65536), R.choice([0, 1, 2, 3, 'd']), R.choice([10, 300, 5000, 40000, 600000]))
p.stats('d'); p.check(); p.save(f'{out}/across')

# 7. reset, destroy, re-create with flags; check and trim
p = Prog()
p.create(0, flags=2); p.create(1, flags=3)
for r in range(3):
    for slot in (0, 1): p.alloc(slot, 100); p.alloc(slot, 30000); p.calloc(slot, 4, 64)
    p.pool_create(0, 0, 24, 40)
    p.pool_alloc(0, 4)
    p.reset(r % 2); p.check(); p.trim(0)
    p.destroy(1); p.create(1, flags=r % 4)
p.stats(0); p.stats(1); p.save(f'{out}/lifecycle')

# 8. absurd sizes and calloc overflow
p = Prog()
for i in range(10): p.alloc(0, 0, absurd=i)
for i in range(6): p.calloc_ovf(0, R.randrange(64), R.randrange(10))
for lg in (4, 12, 20): p.aligned(0, lg, 0, absurd=R.randrange(10))
p.alloc(0, 50); p.realloc(0, 0, 0, absurd=2)
p.stats(0); p.check(); p.save(f'{out}/absurd')

# 9. handles: allocate, free, compact, stale handles after free and reset
p = Prog()
for slot in (0, 'd'):
    for i in range(12): p.h_alloc(slot, R.choice([0, 1, 40, 700, 5000, 70000, 300000]))
    for i in range(5): p.h_free(R.randrange(65536))
    p.compact(slot); p.h_stale(R.randrange(65536))
p.alloc(0, 100); p.trim(0); p.compact(0); p.reset(0)
p.h_stale(0); p.h_stale(3); p.h_alloc(0, 64); p.stats(0); p.check()
p.create(1, limit=512 << 10)
for i in range(10): p.h_alloc(1, 60000)
p.h_free(1); p.h_free(4); p.compact(1); p.check(); p.save(f'{out}/handles')
