#!/usr/bin/env python3
"""Options and statistics, parsed from their output:
BITSLAB_SHOW_STATS=1|json at exit, BITSLAB_VERBOSE, bad option values, malloc_stats(),
mallinfo2() and malloc_trim(). Runs tests/preload/leaky_program.c, whose live blocks are known.

  observe_test.py LEAKY_PROGRAM LIBBITSLAB"""
import json
import os
import re
import subprocess
import sys
import unittest

PROGRAM, LIBRARY = sys.argv[1], sys.argv[2]


def run(mode, **env):
    full = dict(os.environ, LD_PRELOAD=LIBRARY, **env)
    r = subprocess.run([PROGRAM, mode], env=full, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{mode} exited {r.returncode}: {r.stderr}")
    return r.stdout, r.stderr


ROW = re.compile(r"^bitslab:\s+(small|pool)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$")


def text_rows(stderr):
    rows = {}
    for line in stderr.splitlines():
        m = ROW.match(line)
        if m:
            kind, size, allocs, frees, live, peak = m.groups()
            rows[(kind, int(size))] = dict(allocs=int(allocs), frees=int(frees), live=int(live), peak=int(peak))
    return rows


class ShowStats(unittest.TestCase):
    def test_text_rows_add_up(self):
        _, err = run("leak", BITSLAB_SHOW_STATS="1")
        rows = text_rows(err)
        self.assertEqual((rows[("small", 768)]["allocs"], rows[("small", 768)]["frees"],
                          rows[("small", 768)]["live"]), (100, 60, 40))
        self.assertGreaterEqual(rows[("small", 768)]["peak"], 40)
        self.assertLessEqual(rows[("small", 768)]["peak"], 100)
        self.assertEqual(rows[("pool", 5120)], dict(allocs=3, frees=0, live=3, peak=3))
        for (kind, size), r in rows.items():
            self.assertEqual(r["allocs"] - r["frees"], r["live"], (kind, size))
            self.assertGreaterEqual(r["peak"], r["live"])
        live_bytes = sum(size * r["live"] for (kind, size), r in rows.items())
        memory = re.search(r"memory: (\d+) B live, (\d+) B committed, (\d+) B reserved, (\d+) B returned", err)
        self.assertEqual(int(memory.group(1)), live_bytes)
        self.assertLessEqual(int(memory.group(2)), int(memory.group(3)))
        cache = re.search(r"page cache: (\d+) hits of (\d+) calls \((\d+)\.(\d)%\), (\d+) of (\d+) pages cached", err)
        self.assertLessEqual(int(cache.group(1)), int(cache.group(2)))
        self.assertEqual(int(cache.group(6)), 1024)
        system = re.search(r"system allocator: (\d+) requests, (\d+) B", err)
        self.assertEqual((int(system.group(1)), int(system.group(2))), (1, 1 << 20))

    def test_json_is_one_object_with_the_same_numbers(self):
        _, err = run("leak", BITSLAB_SHOW_STATS="json")
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        d = json.loads(lines[0])
        c = [x for x in d["classes"] if x["kind"] == "small" and x["size"] == 768][0]
        self.assertEqual((c["allocs"], c["frees"], c["live"]), (100, 60, 40))
        self.assertEqual(d["system"], {"requests": 1, "bytes": 1 << 20, "above": 262144})
        self.assertEqual(d["build"], "default")
        self.assertEqual(d["page_cache"]["capacity"], 1024)
        self.assertEqual(d["bytes"]["live"], sum(x["size"] * x["live"] for x in d["classes"]))

    def test_off_by_default(self):
        self.assertEqual(run("leak")[1], "")
        self.assertEqual(run("leak", BITSLAB_SHOW_STATS="0")[1], "")


class Options(unittest.TestCase):
    def test_verbose_shows_the_settings_in_force(self):
        _, err = run("none", BITSLAB_VERBOSE="1", BITSLAB_CACHE_PAGES="64", BITSLAB_PURGE_DELAY_MS="250",
                     BITSLAB_LARGE_THRESHOLD="4096", BITSLAB_SHOW_STATS="1")
        self.assertRegex(err, r"bitslab: default build, pid \d+: large threshold 4096 B, slab cache 64 pages, "
                              r"purge delay 250 ms, stats on, leak check off, background purge off, profile off\n")
        self.assertIn("of 64 pages cached", err)

    def test_large_threshold_routes_to_the_system(self):
        _, err = run("leak", BITSLAB_LARGE_THRESHOLD="4096", BITSLAB_SHOW_STATS="json")
        d = json.loads(err)
        self.assertEqual(d["system"]["requests"], 4)  # 3 x 5000 B and the 1 MiB block
        self.assertEqual(d["system"]["above"], 4096)
        self.assertFalse([x for x in d["classes"] if x["kind"] == "pool"])

    def test_bad_values_warn_once_and_keep_the_default(self):
        cases = {
            "BITSLAB_CACHE_PAGES": ("99999", "(0 to 1024 pages)"),
            "BITSLAB_LARGE_THRESHOLD": ("300000", "(0 to 262144 bytes)"),
            "BITSLAB_PURGE_DELAY_MS": ("soon", "(not an unsigned integer)"),
            "BITSLAB_VERBOSE": ("2", "(0 or 1)"),
            "BITSLAB_SHOW_STATS": ("yaml", "(0, 1 or json)"),
        }
        for name, (value, why) in cases.items():
            _, err = run("none", **{name: value})
            self.assertEqual(err, f"bitslab: ignoring {name}={value} {why}; keeping the default\n")
        _, err = run("none", BITSLAB_CACHE_PAGES="99999", BITSLAB_VERBOSE="1")
        self.assertIn("slab cache 1024 pages", err)


RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "bitslab-run")


class Wrapper(unittest.TestCase):
    """scripts/bitslab-run: preloads the library found next to it, passes the exit status on."""

    def wrapped(self, *args):
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",) and not k.startswith("BITSLAB_")}
        return subprocess.run([RUN, *args], env=env, capture_output=True, text=True, timeout=60)

    def test_stats_option_and_exit_status(self):
        r = self.wrapped("--stats", PROGRAM, "leak")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(text_rows(r.stderr)[("small", 768)]["live"], 40)
        self.assertEqual(self.wrapped("sh", "-c", "exit 7").returncode, 7)

    def test_really_preloads(self):
        r = self.wrapped("--verbose", "cat", "/proc/self/maps")
        self.assertIn("/libbitslab.so", r.stdout)
        self.assertRegex(r.stderr, r"^bitslab: default build, pid \d+:")
        hardened = self.wrapped("--hardened", "cat", "/proc/self/maps")
        self.assertIn("/libbitslab-hardened.so", hardened.stdout)

    def test_bad_usage_exits_2(self):
        self.assertEqual(self.wrapped().returncode, 2)
        r = self.wrapped("--bogus", "true")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option '--bogus'", r.stderr)


class Introspection(unittest.TestCase):
    def test_malloc_stats_mallinfo2_and_trim(self):
        out, err = run("introspect")
        values = dict(line.split() for line in out.splitlines())
        self.assertGreaterEqual(int(values["uordblks_live"]), 1000 * 768)
        self.assertGreaterEqual(int(values["arena_live"]), int(values["uordblks_live"]))
        # 768 000 bytes fewer, give or take stdout's buffer (allocated by the first printf)
        self.assertLessEqual(int(values["uordblks_freed"]), int(values["uordblks_live"]) - 1000 * 768 + 8192)
        self.assertEqual(values["trim"], "1")  # the freed slabs went back to the OS
        rows = text_rows(err)  # malloc_stats() printed bitslab's table to stderr
        self.assertEqual(rows[("small", 768)]["live"], 1000)
        self.assertEqual(rows[("small", 768)]["allocs"], 1000)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]])
