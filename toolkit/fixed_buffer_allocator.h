// toolkit/fixed_buffer_allocator.h — bump allocation inside a buffer the caller owns (the
// "Page Allocator" seed's fixed buffer allocator: strict memory limits, cannot grow).
//
//   alignas(16) char storage[4096];
//   bitslab::FixedBufferAllocator buffer(storage, sizeof storage);
//   auto* numbers = static_cast<int*>(buffer.allocate(100 * sizeof(int), alignof(int)));
//   buffer.deallocate(numbers, 100 * sizeof(int));   // the last block: reclaimed
//   buffer.reset();                                   // everything: reclaimed
//
// Blocks are carved from the front of the buffer in order; nothing is ever taken from the
// heap or the OS, so it works where no allocator may run (signal handlers, before main, a
// stack buffer). Like Zig's FixedBufferAllocator, only the most recent block can be freed or
// resized in place; freeing any other block is a no-op (its bytes return with reset()).
//
// Errors: a null buffer with a non-zero size, or a buffer that wraps around the address
// space, throws std::invalid_argument from the constructor (a programming error, found at
// once). allocate reports as malloc does: nullptr + EINVAL for an alignment that is not a
// power of two, nullptr + ENOMEM when the buffer is exhausted, and in both cases the buffer's
// state is unchanged. Not thread-safe.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "core/base/bits.h"

namespace bitslab {

class FixedBufferAllocator {
 public:
  // The buffer must outlive the allocator and every block handed out from it.
  FixedBufferAllocator(void* buffer, size_t bytes) : begin_(static_cast<char*>(buffer)), capacity_(bytes) {
    if (buffer == nullptr && bytes != 0)
      throw std::invalid_argument("FixedBufferAllocator: null buffer with a non-zero size");
    if (bytes > UINTPTR_MAX - reinterpret_cast<uintptr_t>(buffer))
      throw std::invalid_argument("FixedBufferAllocator: buffer wraps around the address space");
  }

  // Move-only: two allocators over one buffer would hand out the same bytes twice. The
  // moved-from allocator is left with an empty buffer (every allocate fails with ENOMEM).
  FixedBufferAllocator(FixedBufferAllocator&& other) noexcept
      : begin_(other.begin_), capacity_(other.capacity_), used_(other.used_) {
    other.begin_ = nullptr;
    other.capacity_ = other.used_ = 0;
  }
  FixedBufferAllocator& operator=(FixedBufferAllocator&& other) noexcept {
    if (this != &other) {
      begin_ = other.begin_;
      capacity_ = other.capacity_;
      used_ = other.used_;
      other.begin_ = nullptr;
      other.capacity_ = other.used_ = 0;
    }
    return *this;
  }
  FixedBufferAllocator(const FixedBufferAllocator&) = delete;
  FixedBufferAllocator& operator=(const FixedBufferAllocator&) = delete;

  // `bytes` at an address aligned to `alignment` (a power of two; the address itself is
  // aligned, whatever the buffer's own alignment). bytes == 0 takes 1 byte, so every block is
  // distinct, as malloc(0)'s are. nullptr + EINVAL / ENOMEM as described above.
  void* allocate(size_t bytes, size_t alignment = alignof(std::max_align_t)) noexcept {
    if (!is_pow2(alignment)) {
      errno = EINVAL;
      return nullptr;
    }
    if (bytes == 0) bytes = 1;
    const size_t padding = padding_at(used_, alignment);
    const size_t room = capacity_ - used_;
    if (padding > room || bytes > room - padding) {
      errno = ENOMEM;
      return nullptr;
    }
    char* block = begin_ + used_ + padding;
    used_ += padding + bytes;
    return block;
  }

  // Reclaims the block if it is the most recent one (p + bytes is the end of what is used),
  // and returns true; any other block: a no-op returning false (reset() reclaims it).
  bool deallocate(void* p, size_t bytes) noexcept {
    if (bytes == 0) bytes = 1;  // as allocate took it
    if (!is_last(p, bytes)) return false;
    used_ = offset_of(p);
    return true;
  }

  // Zig's resize: changes a block's size in place. Shrinking always succeeds (only the last
  // block gives its tail back); growing succeeds only for the last block and only if the
  // buffer has room. On false nothing changed and the block keeps old_bytes.
  bool resize(void* p, size_t old_bytes, size_t new_bytes) noexcept {
    if (old_bytes == 0) old_bytes = 1;
    if (new_bytes == 0) new_bytes = 1;
    if (!is_last(p, old_bytes)) return new_bytes <= old_bytes;
    const size_t start = offset_of(p);
    if (new_bytes > capacity_ - start) return false;
    used_ = start + new_bytes;
    return true;
  }

  // Forgets every block: the whole buffer is available again.
  void reset() noexcept { used_ = 0; }

  size_t used() const { return used_; }          // bytes taken, alignment padding included
  size_t capacity() const { return capacity_; }  // the buffer's size
  size_t available() const { return capacity_ - used_; }
  // Whether p lies in the part of the buffer handed out so far.
  bool owns(const void* p) const {
    return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(begin_) < used_;
  }

 private:
  // Bytes to skip after `offset` so that the address is a multiple of alignment.
  size_t padding_at(size_t offset, size_t alignment) const {
    return (0 - (reinterpret_cast<uintptr_t>(begin_) + offset)) & (alignment - 1);
  }
  size_t offset_of(const void* p) const {
    return reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(begin_);
  }
  // Whether [p, p + bytes) is the block that ends where the used part ends. Integer compares:
  // p may point anywhere.
  bool is_last(const void* p, size_t bytes) const {
    const size_t offset = offset_of(p);
    return offset < used_ && used_ - offset == bytes;
  }

  char* begin_;
  size_t capacity_;
  size_t used_ = 0;
};

}  // namespace bitslab
