// phases: a program whose size mix changes, as a long-running server's does. Five phases:
//
//   small   16-512 B          medium   1-64 KiB          small again
//   large   64 KiB-1 MiB (above 256 KiB: glibc's under bitslab)          idle
//
// Each working phase builds a live set of --mib MiB of its mix, replaces random blocks of it
// --churn times over, then frees it all. For each phase the program prints its RSS with the
// live set full, and after the free, against the live bytes: memory a phase freed should serve
// the next phase (the peak does not grow), and go back to the OS in time. The idle phase sleeps
// --idle-ms and measures again, with no allocator call in between. Peaks inside a phase show in
// scripts/ab's RSS-over-time chart, which samples this program; the whole run's peak in its
// table.
#include <fcntl.h>
#include <unistd.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Five phases (small, medium, small, large blocks, then idle): each builds a live set of\n"
    "--mib MiB, churns it, frees it; prints RSS at each phase end against the live bytes.";

// A "Name: N kB" field of /proc/self/status in KiB, read without allocating.
std::uint64_t status_kib(const char* field) {
  char buf[4096];
  const int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) std::abort();
  buf[n] = '\0';
  const char* at = std::strstr(buf, field);
  return at == nullptr ? 0 : std::strtoull(at + std::strlen(field), nullptr, 10);
}
std::uint64_t rss_kib() { return status_kib("VmRSS:"); }

struct Mix {
  const char* name;
  std::uint32_t low, high;
};

struct Block {
  unsigned char* p;
  std::uint32_t size;
  std::uint32_t tag;
};

void fill(Block& b, bench::SplitMix64& rng, const Mix& mix) {
  b.size = mix.low + rng.below(mix.high - mix.low + 1);
  b.tag = static_cast<std::uint32_t>(rng.next());
  b.p = static_cast<unsigned char*>(std::malloc(b.size));
  if (b.p == nullptr) {
    std::fprintf(stderr, "bench_phases: malloc(%u) failed\n", b.size);
    std::abort();
  }
  // Touch every page, as a program that uses its memory does; tags at both ends.
  for (std::uint32_t i = 0; i < b.size; i += 4096) b.p[i] = static_cast<unsigned char>(b.tag);
  bench::write_tags(b.p, b.size, b.tag);
}

void release(Block& b) {
  bench::check_tags("bench_phases", b.p, b.size, b.tag);
  std::free(b.p);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t mib = 256;
  std::uint64_t churn = 2;
  std::uint64_t idle_ms = 1000;
  std::uint64_t seed = 1;
  bench::parse_flags(argc, argv, kSummary,
                     {{"mib", &mib, 1, "live set of each working phase, MiB"},
                      {"churn", &churn, 0, "times over the live set is replaced, per phase"},
                      {"idle-ms", &idle_ms, 0, "length of the idle phase, ms"},
                      {"seed", &seed, 0, "PRNG seed"}});
  const Mix mixes[] = {{"small", 16, 512},
                       {"medium", 1024, 64 * 1024},
                       {"small2", 16, 512},
                       {"large", 64 * 1024, 1024 * 1024}};
  bench::SplitMix64 rng(seed);
  const std::uint64_t target = mib << 20;
  const std::uint64_t start_ns = bench::now_ns();
  bench::Result result("phases");
  result.add("rss_start_kib", rss_kib());
  std::vector<Block> live;
  for (const Mix& mix : mixes) {
    live.clear();
    std::uint64_t bytes = 0;
    while (bytes < target) {
      live.push_back({});
      fill(live.back(), rng, mix);
      bytes += live.back().size;
    }
    for (std::uint64_t i = 0; i < churn * live.size(); ++i) {
      Block& b = live[rng.below(static_cast<std::uint32_t>(live.size()))];
      bytes -= b.size;
      release(b);
      fill(b, rng, mix);
      bytes += b.size;
    }
    const std::uint64_t rss_full = rss_kib();
    for (Block& b : live) release(b);
    const std::uint64_t rss_after = rss_kib();
    result.add(std::string(mix.name) + "_live_kib", bytes >> 10)
        .add(std::string(mix.name) + "_rss_kib", rss_full)
        .add(std::string(mix.name) + "_rss_after_free_kib", rss_after);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
  result.add("idle_rss_kib", rss_kib())
      .add("seconds", static_cast<double>(bench::now_ns() - start_ns) / 1e9, 3)
      .print();
  return 0;
}
