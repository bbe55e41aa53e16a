#include "toolkit/page_arena.h"

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "core/os/os.h"

namespace bitslab {

size_t PageArena::os_page_size() { return os::page_size(); }

PageArena::PageArena(size_t size_in_bytes) : page_bytes_(os::page_size()) {
  if (size_in_bytes == 0 || size_in_bytes % page_bytes_ != 0 || size_in_bytes > kMaxBytes)
    throw std::invalid_argument(
        "bitslab::PageArena: the size must be a non-zero multiple of the OS page size and at "
        "most 256 MiB");
  base_ = static_cast<char*>(os::reserve_aligned(size_in_bytes, page_bytes_));
  if (base_ == nullptr)
    throw std::system_error(errno ? errno : ENOMEM, std::generic_category(),
                            "bitslab::PageArena: mmap");
  total_pages_ = size_in_bytes / page_bytes_;
}

PageArena::~PageArena() { give_back(); }

PageArena::PageArena(PageArena&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      page_bytes_(other.page_bytes_),
      total_pages_(std::exchange(other.total_pages_, 0)),
      next_(other.next_.exchange(0)) {}

PageArena& PageArena::operator=(PageArena&& other) noexcept {
  if (this != &other) {
    give_back();
    base_ = std::exchange(other.base_, nullptr);
    page_bytes_ = other.page_bytes_;
    total_pages_ = std::exchange(other.total_pages_, 0);
    next_.store(other.next_.exchange(0));
  }
  return *this;
}

void PageArena::give_back() {
  if (base_ != nullptr) os::release(base_, total_pages_ * page_bytes_);
  base_ = nullptr;
  total_pages_ = 0;
  next_.store(0);
}

void* PageArena::alloc_page() {
  // A CAS rather than fetch_add, so that an exhausted arena's counter never passes
  // total_pages (pages_allocated() stays exact, and contains() stays within the reservation).
  size_t index = next_.load(std::memory_order_relaxed);
  do {
    if (index >= total_pages_) {
      errno = ENOMEM;
      return nullptr;
    }
  } while (!next_.compare_exchange_weak(index, index + 1, std::memory_order_relaxed));
  return base_ + index * page_bytes_;
}

}  // namespace bitslab
