// toolkit/local_mem.h — LocalMem: the slab arena's backend for one process, an anonymous
// private mapping (the contract is in toolkit/mem_backend.h).
#pragma once
#include <cerrno>
#include <cstddef>
#include <sys/mman.h>
#include <system_error>
#include <utility>

#include "toolkit/mem_backend.h"

namespace bitslab {

class LocalMem {
 public:
  // LocalMem::Allocator<128, 64, 256> arena;  (needs toolkit/slab_arena.h)
  template <size_t Count, size_t... Sizes>
  using Allocator = Arena<LocalMem, Count, Sizes...>;

  // Maps spec.bytes of zeroed private memory and formats it. Without MAP_NORESERVE, so that
  // under strict overcommit the arena is refused here (std::system_error, ENOMEM) rather than
  // killed by a fault on first touch. Pages are committed as the arena touches them.
  explicit LocalMem(const SegmentSpec& spec) : bytes_(spec.bytes) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "LocalMem: mmap");
    base_ = p;
    spec.format(base_);
  }

  LocalMem(LocalMem&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  LocalMem& operator=(LocalMem&& other) noexcept {
    if (this != &other) {
      release();
      base_ = std::exchange(other.base_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  LocalMem(const LocalMem&) = delete;
  LocalMem& operator=(const LocalMem&) = delete;
  ~LocalMem() { release(); }

  void* data() const noexcept { return base_; }
  size_t size() const noexcept { return bytes_; }
  // A private mapping is always formatted by its own handle.
  bool created() const noexcept { return base_ != nullptr; }

  int mbind(int numa_node) const noexcept { return mem::bindToNode(base_, bytes_, numa_node); }
  int mlock() const noexcept { return mem::lockInRam(base_, bytes_); }

 private:
  void release() noexcept {
    if (base_ != nullptr) ::munmap(base_, bytes_);
    base_ = nullptr;
    bytes_ = 0;
  }

  void* base_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace bitslab
