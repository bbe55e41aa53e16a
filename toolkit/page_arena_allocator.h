// toolkit/page_arena_allocator.h — a bump allocator over pages from a PageAllocator, freed all
// at once (the "Page Allocator" seed's ArenaAllocator backed by page_allocator).
//
//   bitslab::ArenaAllocator arena;                        // backed by OS pages
//   char* name = arena.dupe("green", 6);                  // no individual frees...
//   auto* point = arena.create<Point>(Point{1, 2});
//   arena.release();                                      // ...everything goes back at once
//
// Many allocations that share one lifetime are bump-allocated inside pages taken from the
// backing PageAllocator (default: SystemPageAllocator::instance(), the OS pages); release()
// or the destructor hands every page back in one pass. Blocks are never freed one by one:
// deallocate() only reclaims the most recent allocation (as Zig's arena does) and is a no-op
// for any other block.
//
// Requests that do not fit in one page: a PageAllocator hands out fixed-size pages that need
// not be adjacent, so several pages cannot be joined into one block. Such a request gets a
// dedicated block reserved directly from the OS (core/os: os::reserve_aligned, page-granular,
// aligned to max(alignment, OS page)), unmapped again by release(). The dedicated blocks are
// not counted by the backing PageAllocator; dedicated_blocks() and bytes_reserved() count them.
//
// The bookkeeping lives in the memory it describes (no std containers, no malloc): every page
// starts with a PageHeader linking it to the page used before it, every dedicated block with
// a BlockHeader linking it to the previous dedicated block. Pages from the backing allocator
// are expected to be aligned to at least 16 bytes (PageAllocator promises page alignment).
//
// Errors are reported as malloc reports them, never thrown: allocate returns nullptr and sets
// errno to EINVAL (alignment not a power of two) or ENOMEM (a size that overflows, the backing
// allocator or the OS refusing memory). Not thread-safe: one arena per thread, or a lock around.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "core/base/bits.h"
#include "core/base/fatal.h"
#include "core/os/os.h"
#include "core/page/page_allocator.h"
#include "core/page/system_page_allocator.h"

namespace bitslab {

class ArenaAllocator {
 public:
  explicit ArenaAllocator(PageAllocator& pages = SystemPageAllocator::instance()) noexcept
      : pages_(&pages) {}
  ~ArenaAllocator() { release(); }

  // Move-only: two arenas must never hand back the same pages. The moved-from arena is empty
  // and stays usable, over the same backing allocator.
  ArenaAllocator(ArenaAllocator&& other) noexcept : pages_(other.pages_) { take_from(other); }
  ArenaAllocator& operator=(ArenaAllocator&& other) noexcept {
    if (this != &other) {
      release();
      pages_ = other.pages_;
      take_from(other);
    }
    return *this;
  }
  ArenaAllocator(const ArenaAllocator&) = delete;
  ArenaAllocator& operator=(const ArenaAllocator&) = delete;

  // `bytes` aligned to `alignment` (a power of two; any size, also larger than a page), valid
  // until release(). bytes == 0 gives a distinct 1-byte block, as malloc(0) does.
  // nullptr + EINVAL: alignment not a power of two. nullptr + ENOMEM: bytes too large to
  // represent with its header and padding, or no memory from the backing allocator / the OS.
  void* allocate(size_t bytes, size_t alignment = alignof(std::max_align_t)) noexcept {
    if (!is_pow2(alignment)) {
      errno = EINVAL;
      return nullptr;
    }
    if (bytes == 0) bytes = 1;
    if (void* p = bump(bytes, alignment)) return p;
    return allocate_slow(bytes, alignment);
  }

  // Reclaims [p, p + bytes) only when it is the most recent allocation of the current page
  // (the bump pointer steps back) or the newest dedicated block (unmapped at once); returns
  // whether it did. Any other block stays until release(): an arena has no per-block frees.
  bool deallocate(void* p, size_t bytes) noexcept {
    if (p == nullptr) return false;
    if (bytes == 0) bytes = 1;  // as allocate counted it
    // Compared as integers: p may point anywhere, not necessarily into the current page.
    const uintptr_t block = reinterpret_cast<uintptr_t>(p);
    const uintptr_t cursor = reinterpret_cast<uintptr_t>(cursor_);
    if (current_ != nullptr && block >= reinterpret_cast<uintptr_t>(first_byte(current_)) &&
        block < cursor && cursor - block == bytes) {
      cursor_ = static_cast<char*>(p);
      bytes_allocated_ -= bytes;
      return true;
    }
    if (blocks_ != nullptr && blocks_->payload == p && blocks_->payload_bytes == bytes) {
      BlockHeader* newest = blocks_;
      blocks_ = newest->previous;
      bytes_allocated_ -= bytes;
      dedicated_bytes_ -= newest->mapping_bytes;
      --dedicated_blocks_;
      os::release(newest, newest->mapping_bytes);
      return true;
    }
    return false;
  }

  // A T constructed in arena memory. T must be trivially destructible: release() frees the
  // memory without running destructors. nullptr (errno = ENOMEM) when memory is short.
  template <class T, class... Args>
  T* create(Args&&... args) {
    static_assert(std::is_trivially_destructible_v<T>,
                  "the arena never runs destructors; keep non-trivial types elsewhere");
    void* p = allocate(sizeof(T), alignof(T));
    return p == nullptr ? nullptr : ::new (p) T(std::forward<Args>(args)...);
  }

  // A copy of items[0..count) in arena memory (Zig's allocator.dupe), or nullptr + ENOMEM.
  template <class T>
  T* dupe(const T* items, size_t count) noexcept {
    static_assert(std::is_trivially_copyable_v<T>, "dupe copies bytes");
    if (count > PTRDIFF_MAX / sizeof(T)) {  // no object is larger
      errno = ENOMEM;
      return nullptr;
    }
    void* p = allocate(count * sizeof(T), alignof(T));
    if (p != nullptr && count != 0) memcpy(p, items, count * sizeof(T));
    return static_cast<T*>(p);
  }

  // Hands every page back to the backing allocator (in batches) and unmaps every dedicated
  // block. Every pointer the arena gave out is invalid afterwards; the arena is empty and can
  // be used again.
  void release() noexcept {
    void* batch[kReleaseBatch];
    size_t n = 0;
    for (PageHeader* page = current_; page != nullptr;) {
      PageHeader* previous = page->previous;  // read before the page is given back
      batch[n++] = page;
      if (n == kReleaseBatch) {
        pages_->deallocate(batch, n);
        n = 0;
      }
      page = previous;
    }
    if (n != 0) pages_->deallocate(batch, n);
    for (BlockHeader* block = blocks_; block != nullptr;) {
      BlockHeader* previous = block->previous;
      os::release(block, block->mapping_bytes);
      block = previous;
    }
    reset_state();
  }

  // Bytes handed out and not reclaimed since the last release (as asked for; 0 counts as 1).
  size_t bytes_allocated() const { return bytes_allocated_; }
  // Pages held from the backing allocator.
  size_t pages_held() const { return pages_held_; }
  // Blocks reserved from the OS for requests larger than a page.
  size_t dedicated_blocks() const { return dedicated_blocks_; }
  // Memory held in all: pages plus dedicated blocks (headers, padding and unused tails too).
  size_t bytes_reserved() const { return pages_held_ * pages_->page_size() + dedicated_bytes_; }
  PageAllocator& page_allocator() const { return *pages_; }

  // Largest `bytes` at `alignment` served from a page; larger requests get a dedicated block.
  size_t max_bytes_in_page(size_t alignment = alignof(std::max_align_t)) const {
    const size_t overhead = sizeof(PageHeader) + worst_padding(alignment);
    const size_t page = pages_->page_size();
    return page > overhead ? page - overhead : 0;
  }

 private:
  // At the start of every page: the link to the page filled before it. 16 bytes, so the first
  // block of a page is 16-byte aligned without padding.
  struct alignas(16) PageHeader {
    PageHeader* previous;
  };
  // At the start of every dedicated block: the link to the previous dedicated block, and what
  // release() and deallocate() need to know about it.
  struct BlockHeader {
    BlockHeader* previous;
    size_t mapping_bytes;  // what os::release unmaps
    void* payload;         // what allocate returned
    size_t payload_bytes;
  };
  static constexpr size_t kReleaseBatch = 64;  // pages per deallocate call in release()

  // A fresh page starts its blocks right after its 16-byte header, so an alignment above 16
  // may cost up to alignment - 16 bytes of padding (pages are page-aligned: exactly that, for
  // alignments up to the page size).
  static size_t worst_padding(size_t alignment) {
    return alignment > sizeof(PageHeader) ? alignment - sizeof(PageHeader) : 0;
  }
  static char* first_byte(PageHeader* page) {
    return reinterpret_cast<char*>(page) + sizeof(PageHeader);
  }

  // The fast path: the block fits in the rest of the current page.
  void* bump(size_t bytes, size_t alignment) {
    if (current_ == nullptr) return nullptr;
    const size_t room = static_cast<size_t>(limit_ - cursor_);
    // Distance to the next multiple of alignment; computed without forming an out-of-range
    // pointer, and without overflow for any alignment.
    const size_t padding = (0 - reinterpret_cast<uintptr_t>(cursor_)) & (alignment - 1);
    if (padding > room || bytes > room - padding) return nullptr;
    char* block = cursor_ + padding;
    cursor_ = block + bytes;
    bytes_allocated_ += bytes;
    return block;
  }

  void* allocate_slow(size_t bytes, size_t alignment) {
    if (bytes > max_bytes_in_page(alignment)) return allocate_dedicated(bytes, alignment);
    void* raw = pages_->allocate_one();
    if (raw == nullptr) {
      errno = ENOMEM;  // a PageAllocator sets it too, but a user-written one may not
      return nullptr;
    }
    if (reinterpret_cast<uintptr_t>(raw) % alignof(PageHeader) != 0)
      fatal("ArenaAllocator: the page allocator returned a misaligned page:", raw);
    // The rest of the old page is abandoned: bump allocation never looks back.
    auto* page = ::new (raw) PageHeader{current_};
    current_ = page;
    cursor_ = first_byte(page);
    limit_ = static_cast<char*>(raw) + pages_->page_size();
    ++pages_held_;
    return bump(bytes, alignment);  // fits: bytes <= max_bytes_in_page(alignment)
  }

  void* allocate_dedicated(size_t bytes, size_t alignment) {
    const size_t os_page = os::page_size();
    // The header sits at the start of the mapping and the block at the first multiple of
    // alignment after it; the mapping is aligned to max(alignment, OS page), so that offset
    // is max(header, alignment) bytes.
    const size_t offset = alignment > sizeof(BlockHeader) ? alignment : sizeof(BlockHeader);
    if (bytes > SIZE_MAX - offset || offset + bytes > SIZE_MAX - (os_page - 1)) {
      errno = ENOMEM;
      return nullptr;
    }
    const size_t mapping_bytes = align_up(offset + bytes, os_page);
    const size_t mapping_alignment = alignment > os_page ? alignment : os_page;
    if (mapping_bytes > SIZE_MAX - mapping_alignment) {  // reserve_aligned over-reserves by it
      errno = ENOMEM;
      return nullptr;
    }
    void* mapping = os::reserve_aligned(mapping_bytes, mapping_alignment);
    if (mapping == nullptr) return nullptr;  // errno = ENOMEM from the OS layer
    char* payload = static_cast<char*>(mapping) + offset;
    blocks_ = ::new (mapping) BlockHeader{blocks_, mapping_bytes, payload, bytes};
    ++dedicated_blocks_;
    dedicated_bytes_ += mapping_bytes;
    bytes_allocated_ += bytes;
    return payload;
  }

  void take_from(ArenaAllocator& other) {
    current_ = other.current_;
    cursor_ = other.cursor_;
    limit_ = other.limit_;
    blocks_ = other.blocks_;
    bytes_allocated_ = other.bytes_allocated_;
    pages_held_ = other.pages_held_;
    dedicated_blocks_ = other.dedicated_blocks_;
    dedicated_bytes_ = other.dedicated_bytes_;
    other.reset_state();
  }
  void reset_state() {
    current_ = nullptr;
    cursor_ = limit_ = nullptr;
    blocks_ = nullptr;
    bytes_allocated_ = pages_held_ = dedicated_blocks_ = dedicated_bytes_ = 0;
  }

  PageAllocator* pages_;
  PageHeader* current_ = nullptr;  // the page being filled; newest of the page list
  char* cursor_ = nullptr;         // next free byte of current_
  char* limit_ = nullptr;          // end of current_
  BlockHeader* blocks_ = nullptr;  // newest dedicated block
  size_t bytes_allocated_ = 0;
  size_t pages_held_ = 0;
  size_t dedicated_blocks_ = 0;
  size_t dedicated_bytes_ = 0;
};

}  // namespace bitslab
