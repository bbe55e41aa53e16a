"""The pieces of scripts/ab: allocators, measuring one run, statistics, reports.

Kept apart from the command line so that tests/scripts/ab_test.py can check each
piece on its own (statistics, argument handling, failure reporting) without
running a benchmark.
"""

import atexit
import csv
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")

# name → the .so that LD_PRELOAD brings in (None: glibc, no preload), and the Debian
# package that provides it (scripts/setup --with NAME installs it).
KNOWN_ALLOCATORS = {
    "glibc": (None, None),
    "bitslab": (REPO_ROOT / "build" / "libbitslab.so", None),
    # The hardened build of the same sources (built by scripts/setup with the default one).
    "bitslab-hardened": (REPO_ROOT / "build" / "libbitslab-hardened.so", None),
    # The default build with its heap profiler on (BITSLAB_PROFILE=1, the default rate): what
    # profiling costs. Its profiles go to a scratch directory removed at exit.
    "bitslab-profiled": (REPO_ROOT / "build" / "libbitslab.so", None),
    "mimalloc": (LIBDIR / "libmimalloc.so.2", "libmimalloc-dev"),
    "jemalloc": (LIBDIR / "libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": (LIBDIR / "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
}
ALWAYS = ["glibc", "bitslab", "mimalloc"]
OPTIONAL = ["bitslab-hardened", "bitslab-profiled", "jemalloc", "tcmalloc"]
# Settings an allocator runs with, by name.
_profile_dir = None


def allocator_settings(name):
    global _profile_dir
    if name != "bitslab-profiled":
        return {}
    if _profile_dir is None:
        _profile_dir = tempfile.mkdtemp(prefix="ab-profiles-")
        atexit.register(shutil.rmtree, _profile_dir, True)
    return {"BITSLAB_PROFILE": "1", "BITSLAB_PROFILE_PREFIX": os.path.join(_profile_dir, "run")}

GNU_TIME = "/usr/bin/time"  # Debian package `time`; scripts/setup installs it
SAMPLE_S = 0.02  # RSS sampling period of a run, for the RSS-over-time chart


class UsageError(Exception):
    """Bad input on the command line: reported in one line, exit status 2."""


@dataclass
class Allocator:
    name: str
    preload: str | None  # absolute path of the .so; None runs plain glibc
    # Why this allocator cannot run at all (missing library...); its rows say so.
    unavailable: str | None = None
    settings: dict = field(default_factory=dict)  # environment variables it runs with


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + sys
    maxrss_kib: int
    returncode: int  # negative: killed by that signal
    # (seconds since start, RSS in KiB), every SAMPLE_S while the command ran
    rss_samples: list = field(default_factory=list)


@dataclass
class Cell:
    """Every run of one benchmark under one allocator."""
    benchmark: str
    allocator: Allocator
    runs: list[Run] = field(default_factory=list)
    failure: str | None = None


@dataclass
class Summary:
    wall_s: float
    cpu_s: float
    maxrss_kib: float
    wall_spread: float


# ---------------------------------------------------------------------------
# Statistics.

def median(values):
    """The median of a non-empty sequence (mean of the middle two for an even count)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def ratio(value, baseline):
    """value / baseline, or None when either is unknown or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def spread(values):
    """(max - min) / median: how far apart the runs were, relative."""
    return ratio(max(values) - min(values), median(values))


def geomean(values):
    """Geometric mean of the known (not None), positive values; None if there are none."""
    known = [v for v in values if v is not None and v > 0]
    if not known:
        return None
    return math.exp(sum(math.log(v) for v in known) / len(known))


def describe_failure(returncode):
    """'failed (exit N)' or 'failed (signal NAME)'; None for success."""
    if returncode == 0:
        return None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"failed (signal {name})"
    return f"failed (exit {returncode})"


def summarize(cell):
    if cell.failure is not None or not cell.runs:
        return None
    walls = [run.wall_s for run in cell.runs]
    return Summary(wall_s=median(walls), wall_spread=spread(walls),
                   cpu_s=median([run.cpu_s for run in cell.runs]),
                   maxrss_kib=median([run.maxrss_kib for run in cell.runs]))


# ---------------------------------------------------------------------------
# Allocators.

def parse_with(text):
    """'jemalloc,tcmalloc' → ['jemalloc', 'tcmalloc']; UsageError on an unknown name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in KNOWN_ALLOCATORS:
            raise UsageError(f"unknown allocator '{name}' (known: {', '.join(KNOWN_ALLOCATORS)})")
        if name in ALWAYS:
            raise UsageError(f"'{name}' is always compared; --with takes {', '.join(OPTIONAL)}")
    return names


def child_env(preload, settings=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload is not None:
        env["LD_PRELOAD"] = preload
    env.update(settings or {})
    return env


def why_not_preloadable(name, path):
    """None if ld.so preloads `path`; otherwise why not, in words.

    ld.so only warns and carries on when a preload cannot be loaded, which would
    pass glibc's numbers off as the allocator's: so look for the library in the
    memory map of a trivial preloaded process."""
    path = Path(path)
    if not path.is_file():
        return f"library not found: {path}"
    if any(separator in str(path) for separator in " :"):
        return f"library path has a space or colon, which split LD_PRELOAD: {path}"
    probe = subprocess.run(["cat", "/proc/self/maps"], env=child_env(str(path)),
                           capture_output=True, text=True)
    if probe.returncode == 0 and str(path.resolve()) not in probe.stdout:
        return f"ld.so will not preload {path}: {probe.stderr.strip() or 'not mapped'}"
    return None


def make_allocators(with_names, bitslab_path=None, extra=()):
    """The allocators to compare, in report order, each with an absolute path. extra: (name,
    path) pairs of more libraries to preload (another build of bitslab, say), after bitslab."""
    allocators = []
    for name in ALWAYS + [n for n in OPTIONAL if n in with_names]:
        path, _ = KNOWN_ALLOCATORS[name]
        if name == "bitslab" and bitslab_path is not None:
            path = Path(bitslab_path)
        if path is None:
            allocators.append(Allocator(name, None))
            continue
        path = Path(os.path.abspath(path))  # a relative preload breaks after a chdir
        allocators.append(Allocator(name, str(path), why_not_preloadable(name, path), allocator_settings(name)))
        if name == "bitslab":
            for extra_name, extra_path in extra:
                extra_path = Path(os.path.abspath(extra_path))
                allocators.append(Allocator(extra_name, str(extra_path), why_not_preloadable(extra_name, extra_path)))
    return allocators


# ---------------------------------------------------------------------------
# Running.

def run_once(command, allocator):
    """Runs command to completion under the allocator.

    GNU time sits between us and the command and reports the command's own peak
    RSS: a direct child of ours would inherit our peak RSS (~16 MB of Python) as a
    floor in its ru_maxrss, a child of GNU time only GNU time's (~1 MB)."""
    env = child_env(allocator.preload, allocator.settings)
    argv = list(command)
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="ab-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file, "--"] + argv
    start = time.perf_counter()
    try:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    except OSError as error:
        raise UsageError(f"cannot run {command[0]}: {error.strerror}") from error
    samples = []
    while True:  # RSS every SAMPLE_S until the child is gone
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid != 0:
            break
        rss = sample_rss_kib(child.pid, wrapped=rss_file is not None)
        if rss is not None:
            samples.append((time.perf_counter() - start, rss))
        time.sleep(SAMPLE_S)
    wall_s = time.perf_counter() - start
    child.returncode = returncode = os.waitstatus_to_exitcode(status)
    maxrss_kib = usage.ru_maxrss
    if rss_file is not None:
        with open(rss_file) as report:
            words = report.read().split()
        os.unlink(rss_file)
        # GNU time writes "Command terminated by signal N" (or "Command exited with
        # non-zero status N") before the %M line, and itself exits 128+N for a signal.
        if words and words[-1].isdigit():
            maxrss_kib = int(words[-1])
        if "signal" in words:
            returncode = -int(words[words.index("signal") + 1])
    return Run(wall_s=wall_s, cpu_s=usage.ru_utime + usage.ru_stime,
               maxrss_kib=maxrss_kib, returncode=returncode, rss_samples=samples)


def sample_rss_kib(pid, wrapped):
    """VmRSS of the command: pid's own, or, when pid is GNU time (wrapped), its child's. None
    when it cannot be read (not started yet, or just gone)."""
    try:
        if wrapped:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if not children:
                return None
            pid = int(children[0])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Progress:
    """One line on stderr: which benchmark and allocator, run k of N, elapsed, and an
    estimate of what is left from the mean duration of the runs so far."""

    def __init__(self, total_runs, stream):
        self.total = total_runs
        self.done = 0
        self.start = time.monotonic()
        self.stream = stream
        self.interactive = hasattr(stream, "isatty") and stream.isatty()

    @staticmethod
    def clock(seconds):
        seconds = int(seconds)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def show(self, text):
        elapsed = time.monotonic() - self.start
        left = "?" if self.done == 0 else self.clock(elapsed / self.done * (self.total - self.done))
        line = f"ab: {text} | run {self.done + 1}/{self.total} | elapsed {self.clock(elapsed)}, ~{left} left"
        if self.interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self):
        self.done += 1

    def finish(self):
        if self.interactive:
            self.stream.write("\r\033[K")
        self.stream.write(f"ab: {self.done} runs in {self.clock(time.monotonic() - self.start)}\n")


def run_suite(benchmarks, allocators, repeats, progress, run=run_once):
    """benchmarks: [(name, argv)]. For each benchmark one warm-up round, then `repeats`
    rounds, each running every allocator once (A B C A B C ...), so that drift in the
    machine's load falls on all alike. An allocator is dropped from a benchmark at its
    first failure; the other cells carry on."""
    cells = []
    for name, command in benchmarks:
        row = [Cell(name, allocator) for allocator in allocators]
        for cell in row:
            if cell.allocator.unavailable:
                cell.failure = f"failed ({cell.allocator.unavailable})"
                progress.total -= repeats + 1
        for round_number in range(repeats + 1):
            for cell in row:
                if cell.failure is not None:
                    continue
                what = "warm-up" if round_number == 0 else f"{round_number} of {repeats}"
                progress.show(f"{name}: {cell.allocator.name} {what}")
                result = run(command, cell.allocator)
                progress.step()
                cell.failure = describe_failure(result.returncode)
                if cell.failure is not None:
                    progress.total -= repeats - round_number
                elif round_number > 0:
                    cell.runs.append(result)
        cells.extend(row)
    return cells


# ---------------------------------------------------------------------------
# Reporting.

def fmt(value, digits=2):
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(header, rows, text_columns=1):
    """The first `text_columns` columns left-aligned, the numbers right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * text_columns + ["---:"] * (len(header) - text_columns)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def by_benchmark(cells):
    table = {}
    for cell in cells:
        table.setdefault(cell.benchmark, {})[cell.allocator.name] = cell
    return table


def summary_of(row, name):
    """The Summary of allocator `name` in one benchmark's row, or None."""
    return summarize(row[name]) if name in row else None


def baseline_ratios(s, row):
    """Wall and RSS ratios of summary s against glibc and mimalloc in the same row:
    (wall/glibc, wall/mimalloc, rss/glibc, rss/mimalloc), None where unknown."""
    glibc, mimalloc = summary_of(row, "glibc"), summary_of(row, "mimalloc")
    return (ratio(s.wall_s, glibc and glibc.wall_s), ratio(s.wall_s, mimalloc and mimalloc.wall_s),
            ratio(s.maxrss_kib, glibc and glibc.maxrss_kib),
            ratio(s.maxrss_kib, mimalloc and mimalloc.maxrss_kib))


def detail_rows(cells):
    """One row per benchmark and allocator, with ratios against glibc and mimalloc."""
    rows = []
    for benchmark, row in by_benchmark(cells).items():
        for name, cell in row.items():
            s = summarize(cell)
            if s is None:
                rows.append([benchmark, name, cell.failure or "no runs"] + ["—"] * 8)
                continue
            wall_g, wall_m, rss_g, rss_m = baseline_ratios(s, row)
            rows.append([benchmark, name, f"{s.wall_s:.3f}", fmt(wall_g), fmt(wall_m),
                         f"{s.cpu_s:.3f}", f"{s.maxrss_kib / 1024:.1f}", fmt(rss_g), fmt(rss_m),
                         f"{s.wall_spread:.0%}", str(len(cell.runs))])
    return rows


DETAIL_HEADER = ["benchmark", "allocator", "wall s", "vs glibc", "vs mimalloc", "user+sys s",
                 "peak RSS MiB", "RSS vs glibc", "RSS vs mimalloc", "spread", "runs"]


def geomean_rows(cells, allocator_names):
    """Per allocator: geometric means over the benchmarks of its time and RSS ratios
    against glibc and mimalloc (benchmarks where either side failed are left out)."""
    table = by_benchmark(cells)
    rows = []
    for name in allocator_names:
        columns = []
        for metric in ("wall_s", "maxrss_kib"):
            for baseline in ("glibc", "mimalloc"):
                ratios = []
                for row in table.values():
                    mine = summary_of(row, name)
                    base = summary_of(row, baseline)
                    if mine and base:
                        ratios.append(ratio(getattr(mine, metric), getattr(base, metric)))
                columns.append(fmt(geomean(ratios)))
        failed = sum(1 for row in table.values() if name in row and summary_of(row, name) is None)
        rows.append([name, *columns, str(failed)])
    return rows


GEOMEAN_HEADER = ["allocator", "time vs glibc", "time vs mimalloc", "RSS vs glibc",
                  "RSS vs mimalloc", "failed"]


def write_csv(path, cells):
    """One line per benchmark and allocator: medians, ratios, status; raw runs follow in
    the `walls` column (space-separated seconds)."""
    table = by_benchmark(cells)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["benchmark", "allocator", "status", "wall_s", "cpu_s", "maxrss_kib",
                         "wall_vs_glibc", "wall_vs_mimalloc", "rss_vs_glibc", "rss_vs_mimalloc",
                         "runs", "walls"])
        for benchmark, row in table.items():
            for name, cell in row.items():
                s = summarize(cell)
                if s is None:
                    writer.writerow([benchmark, name, cell.failure or "no runs"] + [""] * 9)
                    continue
                writer.writerow([benchmark, name, "ok", f"{s.wall_s:.4f}", f"{s.cpu_s:.4f}",
                                 f"{s.maxrss_kib:.0f}"]
                                + [fmt(r, 4) for r in baseline_ratios(s, row)]
                                + [len(cell.runs), " ".join(f"{run.wall_s:.4f}" for run in cell.runs)])


def run_gnuplot(script, data_paths):
    """Draws a chart: runs gnuplot on script, then removes the data files it read. Returns
    None, or why no chart was drawn."""
    gnuplot = shutil.which("gnuplot")
    try:
        if gnuplot is None:
            return "gnuplot is not installed (scripts/setup installs gnuplot-nox)"
        result = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    finally:
        for data_path in data_paths:
            Path(data_path).unlink()
    if result.returncode != 0:
        return f"gnuplot failed: {result.stderr.strip()[:300]}"
    return None


def timeline_run(cell):
    """The run whose wall time is the median of the cell's: the one to draw over time."""
    if not cell.runs:
        return None
    ordered = sorted(cell.runs, key=lambda run: run.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def write_timeline_chart(path, cells, benchmark, allocator_names):
    """A PNG of one benchmark's RSS over time under each allocator (its median run, sampled
    every SAMPLE_S), drawn by gnuplot. Returns None, or why no chart was drawn."""
    runs = {}
    for cell in cells:
        if cell.benchmark == benchmark and cell.failure is None:
            run = timeline_run(cell)
            if run is not None and run.rss_samples:
                runs[cell.allocator.name] = run
    if not runs:
        return f"no RSS samples of {benchmark}"
    data_paths = []
    plots = []
    for name in allocator_names:
        if name not in runs:
            continue
        data_path = Path(path).with_name(f"{Path(path).stem}-{name}.dat")
        with open(data_path, "w") as data:
            for seconds, kib in runs[name].rss_samples:
                data.write(f"{seconds:.3f} {kib / 1024:.1f}\n")
        data_paths.append(data_path)
        plots.append(f"'{data_path}' using 1:2 with lines lw 2 title '{name}'")
    script = f"""
set terminal pngcairo size 1200,500 font 'sans,10' background rgb 'white' noenhanced
set output '{path}'
set title '{benchmark}: RSS over time (the median run under each allocator, sampled every {int(SAMPLE_S * 1000)} ms)'
set xlabel 'seconds since start'
set ylabel 'RSS, MiB'
set yrange [0:*]
set grid
set key top right reverse Left samplen 2
plot {', '.join(plots)}
"""
    return run_gnuplot(script, data_paths)


def write_chart(path, cells, allocator_names):
    """A PNG of time and peak RSS per benchmark, each normalised to glibc (1.0), one bar
    per allocator, drawn by gnuplot. Returns None, or why no chart was drawn."""
    table = by_benchmark(cells)
    data_path = Path(path).with_suffix(".dat")
    with open(data_path, "w") as data:
        data.write("# benchmark " + " ".join(f"{n}_time {n}_rss" for n in allocator_names) + "\n")
        for benchmark, row in table.items():
            glibc = summary_of(row, "glibc")
            values = []
            for name in allocator_names:
                s = summary_of(row, name)
                values.append(fmt(ratio(s and s.wall_s, glibc and glibc.wall_s), 4).replace("—", "NaN"))
                values.append(fmt(ratio(s and s.maxrss_kib, glibc and glibc.maxrss_kib), 4).replace("—", "NaN"))
            data.write(benchmark + " " + " ".join(values) + "\n")
    plots = {}
    for offset, metric in ((2, "time"), (3, "RSS")):
        plots[metric] = ", ".join(
            f"'{data_path}' using {offset + 2 * i}:xtic(1) title '{name}'"
            for i, name in enumerate(allocator_names))
    script = f"""
set terminal pngcairo size 1200,800 font 'sans,10' background rgb 'white' noenhanced
set output '{path}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left horizontal reverse Left samplen 2 width 3
set grid ytics
set xtics rotate by -30
set datafile missing 'NaN'
set multiplot layout 2,1 title 'bitslab A/B: median of interleaved runs, normalised to glibc (lower is better)'
set ylabel 'wall time / glibc'
set yrange [0:*]
plot {plots['time']}, 1 with lines lc rgb 'black' dt 2 notitle
set ylabel 'peak RSS / glibc'
plot {plots['RSS']}, 1 with lines lc rgb 'black' dt 2 notitle
unset multiplot
"""
    return run_gnuplot(script, [data_path])
