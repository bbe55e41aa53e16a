// toolkit/page_arena.h — an mmap arena of OS pages handed out in address order (the hpalloc
// seed's Arena).
//
//   bitslab::PageArena arena(64 * bitslab::PageArena::os_page_size());   // 64 pages
//   void* page = arena.alloc_page();   // page-aligned; nullptr once all are handed out
//
// One reservation through the core's OS layer (core/os: mmap with MAP_NORESERVE, so a page
// costs memory only once touched), given back whole by the destructor. Pages are never freed
// one by one: the arena is the backing store of allocators that recycle blocks themselves
// (FixedBlockAllocator). What differs from the seed: the page size is the OS's (sysconf), not
// an assumed 4096, and alloc_page is safe to call from several threads (one CAS).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace bitslab {

class PageArena {
 public:
  static constexpr size_t kMaxBytes = size_t{256} << 20;  // the seed's limit: 256 MiB

  // size_in_bytes: a non-zero multiple of the OS page size, at most kMaxBytes; otherwise
  // std::invalid_argument. A refused reservation throws std::system_error (ENOMEM).
  explicit PageArena(size_t size_in_bytes);
  ~PageArena();
  PageArena(PageArena&& other) noexcept;
  PageArena& operator=(PageArena&& other) noexcept;
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  static size_t os_page_size();
  size_t page_size() const { return page_bytes_; }
  // The next page in address order, or nullptr (errno = ENOMEM) once all total_pages() are
  // handed out.
  void* alloc_page();
  size_t pages_allocated() const { return next_.load(std::memory_order_relaxed); }
  size_t total_pages() const { return total_pages_; }
  // Whether p lies in a page this arena has handed out.
  bool contains(const void* p) const {
    const uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(base_);
    return base_ != nullptr && offset < pages_allocated() * page_bytes_;
  }

 private:
  void give_back();

  char* base_ = nullptr;
  size_t page_bytes_ = 0;
  size_t total_pages_ = 0;
  std::atomic<size_t> next_{0};
};

}  // namespace bitslab
