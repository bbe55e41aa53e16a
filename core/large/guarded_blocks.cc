#include "core/large/guarded_blocks.h"

#include <cerrno>
#include <cstdint>

#include "core/base/bits.h"
#include "core/base/fatal.h"
#include "core/base/hardening.h"
#include "core/base/spin_lock.h"
#include "core/os/heap_range.h"
#include "core/os/os.h"

namespace bitslab::guarded {

namespace {

struct Header {
  static constexpr uint32_t kMagic = 0x1a26eb10;
  enum State : uint32_t { kLive = 1, kFree = 2 };
  uint32_t tag;          // header_tag(this, kMagic): the header is intact
  State state;
  size_t granules;       // the range, in granules
  char* data;            // first data page
  size_t data_bytes;
  void* block;           // what allocate returned
  size_t usable;         // from block to the tail guard page
  Header* next_free;     // freed ranges kept for reuse
};

SpinLock g_lock;
// Freed ranges, any size, reused by exact granule count: a program that frees and allocates
// the same large size pays no mmap. A few only: a range holds whole granules of address space
// (no RSS, its pages are decommitted), and one more freed is unmapped at once instead.
constexpr size_t kKeptFreeRanges = 4;
Header* g_free = nullptr;
size_t g_free_count = 0;
size_t g_live_blocks = 0;
size_t g_live_bytes = 0;

Header* take_free_range(size_t granules) {
  for (Header** link = &g_free; *link != nullptr; link = &(*link)->next_free) {
    Header* h = *link;
    if (h->granules == granules) {
      *link = h->next_free;
      --g_free_count;
      return h;
    }
  }
  return nullptr;
}

// The header of the range that holds p: back over kLargeTail granules to the kLarge one.
Header* header_of(const void* p) {
  uintptr_t g = reinterpret_cast<uintptr_t>(p) & ~(kGranuleBytes - 1);
  while (HeapRange::kind_of(reinterpret_cast<void*>(g)) == GranuleKind::kLargeTail) g -= kGranuleBytes;
  Header* h = reinterpret_cast<Header*>(g);
  if (HeapRange::kind_of(h) != GranuleKind::kLarge || h->tag != header_tag(h, Header::kMagic))
    fatal("free of a pointer that bitslab never handed out:", p);
  return h;
}

// Under g_lock. Keeps h for reuse if there is room; otherwise returns it, for the caller to
// unmap outside the lock.
Header* keep_free_range(Header* h) {
  if (g_free_count >= kKeptFreeRanges) return h;
  h->next_free = g_free;
  g_free = h;
  ++g_free_count;
  return nullptr;
}

// Unmapped: the map says kNone before the memory goes, so a late free of one of its blocks is
// no longer ours (and in the shim, glibc's to refuse); a use after free still faults.
void unmap_range(Header* h) {
  if (h != nullptr) HeapRange::release(h, h->granules);
}

}  // namespace

void* allocate(size_t size, size_t alignment) {
  const size_t page = os::page_size();
  if (alignment < kMinAlign) alignment = kMinAlign;
  // Data pages: the block, plus room to align it when the alignment exceeds a page (a
  // page-aligned tail minus the size is then not aligned by itself).
  if (size > (size_t{1} << 46) || alignment > (size_t{1} << 40)) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t data_bytes = align_up(size == 0 ? 1 : size, page) + (alignment > page ? alignment : 0);
  const size_t granules = (3 * page + data_bytes + kGranuleBytes - 1) / kGranuleBytes;

  Header* h;
  {
    SpinGuard guard(g_lock);
    h = take_free_range(granules);
  }
  if (h == nullptr) {
    h = static_cast<Header*>(HeapRange::claim(granules, GranuleKind::kLarge, GranuleKind::kLargeTail));
    if (h == nullptr) return nullptr;  // errno = ENOMEM
    h->granules = granules;
  }
  char* base = reinterpret_cast<char*>(h);
  char* data = base + 2 * page;
  // Everything after the header inaccessible, then the data pages open: 2 mprotects, which
  // leave the front guard, the tail guard and the unused rest of the range closed.
  if (!os::protect(base + page, granules * kGranuleBytes - page, false) ||
      !os::protect(data, data_bytes, true)) {
    h->state = Header::kFree;
    Header* gone;
    {
      SpinGuard guard(g_lock);
      gone = keep_free_range(h);
    }
    unmap_range(gone);
    errno = ENOMEM;
    return nullptr;
  }
  char* tail = data + data_bytes;
  char* block = reinterpret_cast<char*>(align_down(reinterpret_cast<uintptr_t>(tail) - size, alignment));
  h->state = Header::kLive;
  h->data = data;
  h->data_bytes = data_bytes;
  h->block = block;
  h->usable = static_cast<size_t>(tail - block);
  h->next_free = nullptr;
  __atomic_store_n(&h->tag, header_tag(h, Header::kMagic), __ATOMIC_RELEASE);
  SpinGuard guard(g_lock);
  ++g_live_blocks;
  g_live_bytes += h->usable;
  return block;
}

void deallocate(void* p) {
  Header* h = header_of(p);
  {
    SpinGuard guard(g_lock);
    if (h->state != Header::kLive || h->block != p) {
      if (h->state == Header::kFree && h->block == p) fatal("double free of", p);
      fatal("free of a pointer that bitslab never handed out:", p);
    }
    h->state = Header::kFree;  // under the lock: a racing second free sees it
    --g_live_blocks;
    g_live_bytes -= h->usable;
  }
  // The pages go back to the OS now and the range closes, so a use after free faults; it
  // reads as zeros when the range is reused (calloc relies on that).
  os::decommit(h->data, h->data_bytes);
  os::protect(h->data, h->data_bytes, false);
  Header* gone;
  {
    SpinGuard guard(g_lock);
    gone = keep_free_range(h);
  }
  unmap_range(gone);
}

size_t release_free_ranges() {
  Header* list;
  {
    SpinGuard guard(g_lock);
    list = g_free;
    g_free = nullptr;
    g_free_count = 0;
  }
  size_t bytes = 0;
  while (list != nullptr) {
    Header* next = list->next_free;  // read before the range goes
    bytes += list->granules * kGranuleBytes;
    unmap_range(list);
    list = next;
  }
  return bytes;
}

size_t usable_size(const void* p) {
  Header* h = header_of(p);
  if (h->state != Header::kLive || h->block != p)
    fatal("usable_size of a pointer that bitslab never handed out:", p);
  return h->usable;
}

size_t live_blocks() {
  SpinGuard guard(g_lock);
  return g_live_blocks;
}
size_t live_bytes() {
  SpinGuard guard(g_lock);
  return g_live_bytes;
}

SpinLock& fork_lock() { return g_lock; }

}  // namespace bitslab::guarded
