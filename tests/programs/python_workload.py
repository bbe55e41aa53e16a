"""Allocation-heavy Python workload with a deterministic digest.

Dicts, lists, strings, bytes/bytearray growth (realloc) and a JSON
round-trip, at sizes from tiny objects to multi-megabyte buffers. Every
result is folded into a SHA-256 digest; the output must be identical with and
without the allocator preloaded (run_program.sh compares it with
python_workload.expected).

Usage: python_workload.py [--expect-preload LIB]
  With --expect-preload, also verify that LIB is mapped into this process and
  that its bitslab_owns() claims a malloc'd object (proof the preload took
  effect in the real interpreter); failures exit with status 3.
"""
import hashlib
import json
import sys

digest = hashlib.sha256()


def record(label, value):
    """Prints a labelled result and folds it into the digest."""
    text = f"{label}: {value}"
    print(text)
    digest.update(text.encode())


def check_preload(lib):
    import ctypes

    with open("/proc/self/maps") as maps:
        if lib not in maps.read():
            print(f"FAIL: {lib} is not mapped into python", file=sys.stderr)
            sys.exit(3)
    process = ctypes.CDLL(None)
    owns = process.bitslab_owns
    owns.argtypes = [ctypes.c_void_p]
    owns.restype = ctypes.c_int
    max_core = process.bitslab_max_core_size
    max_core.restype = ctypes.c_size_t
    # Objects above pymalloc's 512-byte limit are malloc'd; id() is their address.
    pool_sized = bytes(5000)
    large = bytes(max_core() + 100000)
    if owns(id(pool_sized)) != 1 or owns(id(large)) != 0:
        print("FAIL: bitslab_owns does not match the expected routing "
              f"(pool-sized: {owns(id(pool_sized))}, large: {owns(id(large))})",
              file=sys.stderr)
        sys.exit(3)


def dict_churn():
    # Build, grow, shrink and rebuild dicts with string keys of varying size.
    table = {}
    for i in range(120000):
        table[f"key-{i}-{'x' * (i % 40)}"] = [i, i * i % 1009, str(i)[::-1]]
    for i in range(0, 120000, 3):
        del table[f"key-{i}-{'x' * (i % 40)}"]
    total = sum(v[1] for v in table.values())
    merged = {k: v for k, v in table.items() if v[0] % 7 == 0}
    record("dict entries", len(table))
    record("dict value sum", total)
    record("merged entries", len(merged))
    inverted = {}
    for k, v in table.items():
        inverted.setdefault(v[1], []).append(k)
    record("inverted buckets", len(inverted))
    record("largest bucket", max(len(b) for b in inverted.values()))


def list_churn():
    numbers = [(i * 7919) % 100003 for i in range(200000)]
    numbers.sort()
    record("sorted sample", numbers[::40000])
    nested = [[j for j in range(i % 300)] for i in range(3000)]
    record("nested total", sum(len(x) for x in nested))
    while len(nested) > 10:  # shrink by popping from both ends
        nested.pop()
        nested.pop(0)
    record("nested left", [len(x) for x in nested])
    words = " ".join(str(i) for i in range(50000)).split(" ")
    record("words", (len(words), words[12345], "".join(words[:20])))


def buffer_growth():
    # bytearray += and bytes joins go through realloc at every magnitude,
    # from small blocks through pool sizes into glibc's large blocks.
    buffer = bytearray()
    step = 0
    while len(buffer) < 6 * 1024 * 1024:
        buffer += bytes((step * 31 + k) & 0xFF for k in range(1 + step * 37 % 4000))
        step += 1
    record("buffer steps", step)
    record("buffer sha256", hashlib.sha256(buffer).hexdigest())
    while len(buffer) > 100:
        del buffer[len(buffer) // 2:]
    record("shrunk buffer", bytes(buffer).hex())


def json_round_trip():
    document = {
        "users": [
            {"id": i, "name": f"user{i}", "tags": [f"t{j}" for j in range(i % 9)],
             "score": i * 1.25, "active": i % 3 == 0, "parent": None if i % 5 else i // 5}
            for i in range(20000)
        ],
        "meta": {"version": 3, "title": "bitslab json test " * 50},
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    record("json length", len(text))
    record("json sha256", hashlib.sha256(text.encode()).hexdigest())
    parsed = json.loads(text)
    record("json round trip equal", parsed == document)
    active = [u["name"] for u in parsed["users"] if u["active"]]
    record("active users", (len(active), active[-1]))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--expect-preload":
        check_preload(sys.argv[2])
    elif len(sys.argv) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    dict_churn()
    list_churn()
    buffer_growth()
    json_round_trip()
    print("digest:", digest.hexdigest())


main()
