"""Tests of scripts/ab and scripts/abkit.py: statistics, argument handling, failure
reporting and the outputs. No timing is asserted: the machine is shared and noisy."""

import csv
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import abkit  # noqa: E402

AB = str(ROOT / "scripts" / "ab")
BITSLAB = os.environ.get("BITSLAB_LIB", str(ROOT / "build" / "libbitslab.so"))


def run_ab(*args):
    out = tempfile.mkdtemp(prefix="ab-test-")
    result = subprocess.run([AB, "--no-setup", "--out", out, "--bitslab", BITSLAB, *args],
                            capture_output=True, text=True, timeout=120)
    return result, Path(out)


class Statistics(unittest.TestCase):
    def test_median(self):
        self.assertEqual(abkit.median([3, 1, 2]), 2)
        self.assertEqual(abkit.median([4, 1, 3, 2]), 2.5)
        with self.assertRaises(ValueError):
            abkit.median([])

    def test_ratio_and_unknowns(self):
        self.assertEqual(abkit.ratio(3, 2), 1.5)
        self.assertIsNone(abkit.ratio(None, 2))
        self.assertIsNone(abkit.ratio(3, None))
        self.assertIsNone(abkit.ratio(3, 0))

    def test_spread(self):
        self.assertAlmostEqual(abkit.spread([9, 10, 11]), 0.2)

    def test_geomean_skips_unknowns(self):
        self.assertAlmostEqual(abkit.geomean([2, 8]), 4)
        self.assertAlmostEqual(abkit.geomean([2, None, 8]), 4)
        self.assertIsNone(abkit.geomean([None]))
        self.assertIsNone(abkit.geomean([]))

    def test_describe_failure(self):
        self.assertIsNone(abkit.describe_failure(0))
        self.assertEqual(abkit.describe_failure(3), "failed (exit 3)")
        self.assertEqual(abkit.describe_failure(-11), "failed (signal SIGSEGV)")


class Arguments(unittest.TestCase):
    def test_with_names(self):
        self.assertEqual(abkit.parse_with("jemalloc, tcmalloc"), ["jemalloc", "tcmalloc"])
        self.assertEqual(abkit.parse_with(""), [])
        with self.assertRaises(abkit.UsageError):
            abkit.parse_with("hoard")
        with self.assertRaises(abkit.UsageError):
            abkit.parse_with("mimalloc")  # always there

    def test_bad_command_lines_exit_2_with_a_message(self):
        for args, message in [(["--with", "hoard"], "unknown allocator 'hoard'"),
                              (["--only", "nosuch"], "unknown benchmark 'nosuch'"),
                              (["-n", "0"], "-n must be at least 1"),
                              (["--"], "nothing after '--'"),
                              (["--quick", "--", "true"], "not with '-- CMD'")]:
            result, _ = run_ab(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(message, result.stderr, args)

    def test_relative_library_path_becomes_absolute(self):
        allocators = abkit.make_allocators([], bitslab_path="build/libbitslab.so")
        self.assertTrue(os.path.isabs(allocators[1].preload))


class FailureReporting(unittest.TestCase):
    """A fake runner: the suite logic without processes."""

    class Silent:
        total = 0
        def show(self, text): pass
        def step(self): pass

    def test_a_failing_allocator_is_marked_and_the_rest_reported(self):
        allocators = [abkit.Allocator("glibc", None), abkit.Allocator("bitslab", "/x.so"),
                      abkit.Allocator("mimalloc", "/y.so", unavailable="library not found: /y.so")]
        calls = []

        def fake_run(command, allocator):
            calls.append(allocator.name)
            code = -6 if allocator.name == "bitslab" else 0
            return abkit.Run(wall_s=1.0, cpu_s=0.9, maxrss_kib=1000, returncode=code)

        cells = abkit.run_suite([("b", ["cmd"])], allocators, 3, self.Silent(), run=fake_run)
        failures = {c.allocator.name: c.failure for c in cells}
        self.assertIsNone(failures["glibc"])
        self.assertEqual(failures["bitslab"], "failed (signal SIGABRT)")
        self.assertEqual(failures["mimalloc"], "failed (library not found: /y.so)")
        self.assertEqual(calls.count("bitslab"), 1)  # dropped after its first failure
        self.assertEqual(calls.count("glibc"), 4)    # warm-up + 3 measured
        self.assertNotIn("mimalloc", calls)
        rows = abkit.detail_rows(cells)
        self.assertEqual(rows[0][:3], ["b", "glibc", "1.000"])
        self.assertEqual(rows[1][2], "failed (signal SIGABRT)")

    def test_geomeans_and_interleaving(self):
        order = []

        def fake_run(command, allocator):
            order.append(allocator.name)
            wall = {"glibc": 2.0, "bitslab": 1.0, "mimalloc": 4.0}[allocator.name]
            if command[0] == "second":
                wall *= 2 if allocator.name == "bitslab" else 1
            return abkit.Run(wall_s=wall, cpu_s=wall, maxrss_kib=100, returncode=0)

        allocators = [abkit.Allocator(n, None) for n in ("glibc", "bitslab", "mimalloc")]
        cells = abkit.run_suite([("first", ["first"]), ("second", ["second"])], allocators, 2,
                                self.Silent(), run=fake_run)
        self.assertEqual(order[:6], ["glibc", "bitslab", "mimalloc"] * 2)  # A B C A B C
        rows = {r[0]: r for r in abkit.geomean_rows(cells, ["glibc", "bitslab", "mimalloc"])}
        # bitslab/glibc: 0.5 on the first, 1.0 on the second → geomean sqrt(0.5)
        self.assertEqual(rows["bitslab"][1], "0.71")
        # bitslab/mimalloc: 0.25 and 0.5 → sqrt(0.125)
        self.assertEqual(rows["bitslab"][2], "0.35")
        self.assertEqual(rows["bitslab"][3], "1.00")


class EndToEnd(unittest.TestCase):
    def test_command_that_fails_under_preloads_is_reported_per_row(self):
        result, out = run_ab("-n", "1", "--", "sh", "-c", 'test -z "$LD_PRELOAD"')
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertRegex(result.stdout, r"\| sh \| glibc \| [0-9.]+ \|")
        self.assertIn("| sh | bitslab | failed (exit 1) |", result.stdout)
        self.assertIn("| sh | mimalloc | failed (exit 1) |", result.stdout)
        with open(out / "ab-command.csv") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["status"] for r in rows], ["ok", "failed (exit 1)", "failed (exit 1)"])
        self.assertGreater(int(rows[0]["maxrss_kib"]), 0)

    def test_a_crash_is_reported_with_its_signal(self):
        result, _ = run_ab("-n", "1", "--", "sh", "-c", "kill -SEGV $$")
        self.assertEqual(result.returncode, 1)
        self.assertIn("| sh | glibc | failed (signal SIGSEGV) |", result.stdout)

    def test_a_missing_library_marks_its_rows_and_the_rest_runs(self):
        out = tempfile.mkdtemp(prefix="ab-test-")
        result = subprocess.run([AB, "--no-setup", "--out", out, "--bitslab", "/nonexistent/libx.so",
                                 "-n", "1", "--", "true"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("library not found: /nonexistent/libx.so", result.stderr)
        self.assertIn("| true | bitslab | failed (library not found", result.stdout)
        self.assertRegex(result.stdout, r"\| true \| mimalloc \| [0-9.]+ \|")

    def test_bitslab_really_is_preloaded(self):
        # /proc/self/maps of the child lists the library only if the preload happened.
        probe = "grep -q libbitslab /proc/self/maps"
        result, _ = run_ab("-n", "1", "--", "sh", "-c", probe)
        self.assertRegex(result.stdout, r"\| sh \| bitslab \| [0-9.]+ \|")
        self.assertIn("| sh | glibc | failed (exit 1) |", result.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
