// Layer 1: the OS calls and the map of granules that are ours.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <sys/resource.h>
#include <unistd.h>

#include "core/os/heap_range.h"
#include "core/os/os.h"
#include "tests/support/child.h"

using namespace bitslab;

TEST_CASE("page size comes from sysconf") {
  CHECK(os::page_size() == static_cast<size_t>(sysconf(_SC_PAGESIZE)));
}

TEST_CASE("reserve_aligned gives aligned, writable, zeroed memory, and decommit zeroes it") {
  const size_t align = size_t{1} << 22;
  char* p = static_cast<char*>(os::reserve_aligned(align, align));
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % align == 0);
  CHECK(p[0] == 0);
  CHECK(p[align - 1] == 0);
  p[0] = 1;
  p[align - 1] = 2;
  const int before = errno = 1234;
  os::decommit(p, align);
  CHECK(errno == before);  // errno is preserved
  CHECK(p[0] == 0);
  CHECK(p[align - 1] == 0);
}

TEST_CASE("claimed granules are ours, with their kind, and other memory is not") {
  char* g = static_cast<char*>(HeapRange::claim(2, GranuleKind::kPool));
  REQUIRE(g != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(g) % kGranuleBytes == 0);
  CHECK(HeapRange::kind_of(g) == GranuleKind::kPool);
  CHECK(HeapRange::kind_of(g + 2 * kGranuleBytes - 1) == GranuleKind::kPool);
  CHECK(HeapRange::contains(g + kGranuleBytes));
  int on_stack = 0;
  void* from_libc = malloc(64);
  CHECK_FALSE(HeapRange::contains(&on_stack));
  CHECK_FALSE(HeapRange::contains(from_libc));
  CHECK_FALSE(HeapRange::contains(nullptr));
  CHECK_FALSE(HeapRange::contains(reinterpret_cast<void*>(~uintptr_t{0} - 15)));  // kernel half
  CHECK_FALSE(HeapRange::contains(reinterpret_cast<void*>(uintptr_t{1} << 50)));
  free(from_libc);
  CHECK(HeapRange::mapped_bytes() >= 2 * kGranuleBytes);
  // Released: the map forgets them, and the address space goes back (unmapped: reading it
  // would fault, so only the map and the counters are checked).
  const size_t mapped = HeapRange::mapped_bytes();
  const size_t unmapped = HeapRange::unmapped_bytes();
  HeapRange::release(g, 2);
  CHECK_FALSE(HeapRange::contains(g));
  CHECK_FALSE(HeapRange::contains(g + kGranuleBytes));
  CHECK(HeapRange::mapped_bytes() == mapped - 2 * kGranuleBytes);
  CHECK(HeapRange::unmapped_bytes() == unmapped + 2 * kGranuleBytes);
}

TEST_CASE("address space is mapped as claims need it, not reserved ahead") {
  const size_t before = HeapRange::mapped_bytes();
  void* g = HeapRange::claim(1, GranuleKind::kPages);
  REQUIRE(g != nullptr);
  CHECK(HeapRange::mapped_bytes() == before + kGranuleBytes);
  HeapRange::release(g, 1);
  CHECK(HeapRange::mapped_bytes() == before);
}

TEST_CASE("reservation keeps working under ulimit -v, then fails with ENOMEM") {
  auto result = test::run_in_child([] {
    // Leave room for ~40 MiB more address space: about ten granules.
    long vm_kib = 0;
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
      if (sscanf(line, "VmSize: %ld kB", &vm_kib) == 1) break;
    if (f) fclose(f);
    struct rlimit lim;
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(vm_kib) * 1024 + (40u << 20);
    if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(10);
    // Claims succeed while they fit under the limit, then fail cleanly.
    if (HeapRange::claim(1, GranuleKind::kPages) == nullptr) _exit(11);
    int got = 1;
    for (int i = 0; i < 200; ++i) {
      errno = 0;
      if (HeapRange::claim(1, GranuleKind::kPages) == nullptr) {
        _exit(errno == ENOMEM && got >= 2 ? 0 : 12);
      }
      ++got;
    }
    _exit(13);  // 800 MiB fitted under a 40 MiB allowance: the limit did nothing
  });
  CHECK(result.exited);
  CHECK(result.exit_code == 0);
}
