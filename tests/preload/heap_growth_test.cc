// A heap that outgrows bitslab's first address-space reservation: hundreds of
// MiB of small and pool blocks live at once, every one owned by bitslab,
// distinct and intact, then freed and the memory reused.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tests/preload/preload.h"

namespace {

// Stamps a block with its index at both ends: two live blocks that overlap,
// or a block shorter than requested, lose a stamp.
void stamp(void* p, std::size_t n, std::uint64_t index) {
  std::memcpy(p, &index, sizeof index);
  std::memcpy(static_cast<char*>(p) + n - sizeof index, &index, sizeof index);
}

bool stamp_intact(const void* p, std::size_t n, std::uint64_t index) {
  std::uint64_t head = 0, tail = 0;
  std::memcpy(&head, p, sizeof head);
  std::memcpy(&tail, static_cast<const char*>(p) + n - sizeof tail, sizeof tail);
  return head == index && tail == index;
}

struct Batch {
  std::size_t size;
  std::size_t count;
};

// Allocates every batch, checks ownership and stamps, frees everything.
// Returns the number of problems found.
long allocate_check_free(const std::vector<Batch>& batches, std::uint64_t salt) {
  struct Live {
    void* p;
    std::size_t n;
    std::uint64_t index;
  };
  std::vector<Live> live;
  long problems = 0;
  std::uint64_t index = salt;
  for (const Batch& b : batches) {
    for (std::size_t i = 0; i < b.count; ++i) {
      void* p = std::malloc(b.size);
      if (p == nullptr || !preload::owns(p)) {
        ++problems;
        std::free(p);
        continue;
      }
      stamp(p, b.size, index);
      live.push_back({p, b.size, index++});
    }
  }
  for (const Live& l : live) {
    if (!stamp_intact(l.p, l.n, l.index)) ++problems;
    std::free(l.p);
  }
  return problems;
}

}  // namespace

TEST_CASE("hundreds of MiB of live small and pool blocks are all bitslab's and intact") {
  const std::size_t max = preload::max_core_size();
  // About 128 MiB of 64-byte blocks, 300 MiB of 100 KiB pool blocks, and
  // some blocks at the top of the pool range: well past a 256 MiB reservation.
  const std::vector<Batch> batches = {
      {64, 2'000'000}, {100 * 1024, 3000}, {max, 64}, {1500, 20000}};
  CHECK(allocate_check_free(batches, 1) == 0);
  // Everything was freed: the same workload again must reuse the memory
  // (and still be correct).
  CHECK(allocate_check_free(batches, 1'000'000'000) == 0);
}
