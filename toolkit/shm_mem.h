// toolkit/shm_mem.h — ShmMem: the slab arena's backend for several processes, a POSIX named
// shared-memory object (shm_open) mapped MAP_SHARED (the contract is in toolkit/mem_backend.h).
//
// Attaching by name:
//   * The first process creates the object (O_CREAT | O_EXCL decides who is first, atomically),
//     sizes it, maps it, formats the arena in it and then publishes "ready" (a release store).
//   * Every later process opens the existing object, waits with exponential backoff until the
//     creator has sized it and published "ready" (an acquire load), then checks that it was
//     made for the same arena type: same size and same layout fingerprint. A mismatch throws
//     std::system_error(EINVAL) and leaves the segment alone: never silent corruption.
//   * A creator that died before publishing leaves a segment nobody can attach: the others
//     give up after ShmOptions::attachTimeout (std::system_error, ETIMEDOUT). Unlink the name.
//
// The object outlives its processes: call ShmMem::unlink(name) at teardown. A segment that
// survives (a crash, no unlink) is attached as it is, chunks still allocated included.
//
// Segment: [ the arena's spec.bytes | pad to 64 | Control (64 bytes) ]. The control block is
// a trailer, not a header, so that the arena starts at the page-aligned start of the mapping
// (its chunks are aligned relative to it) without a whole page spent on 32 bytes of header.
//
// Pages are committed on first touch (ftruncate makes a sparse object, no fallocate): the
// arena carves chunks lazily, so an arena costs the memory it uses. If /dev/shm is too small
// for what is touched, the toucher gets SIGBUS, as with any tmpfs mapping.
#pragma once
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

#include "core/base/compiler.h"
#include "toolkit/mem_backend.h"

namespace bitslab {

struct ShmOptions {
  mode_t mode = 0600;  // permissions of a created object (the umask applies): same user only by default
  // How long an attaching process waits for the creator to size and format the segment.
  std::chrono::milliseconds attachTimeout{5000};
};

class ShmMem {
 public:
  // ShmMem::Allocator<128, 64, 256> arena("/my_arena");  (needs toolkit/slab_arena.h)
  template <size_t Count, size_t... Sizes>
  using Allocator = Arena<ShmMem, Count, Sizes...>;

  ShmMem(const char* name, const SegmentSpec& spec) : ShmMem(name, ShmOptions{}, spec) {}
  ShmMem(const char* name, const ShmOptions& options, const SegmentSpec& spec);

  ShmMem(ShmMem&& other) noexcept
      : map_(std::exchange(other.map_, nullptr)),
        mapped_(std::exchange(other.mapped_, 0)),
        bytes_(std::exchange(other.bytes_, 0)),
        created_(std::exchange(other.created_, false)) {}
  ShmMem& operator=(ShmMem&& other) noexcept {
    if (this != &other) {
      release();
      map_ = std::exchange(other.map_, nullptr);
      mapped_ = std::exchange(other.mapped_, 0);
      bytes_ = std::exchange(other.bytes_, 0);
      created_ = std::exchange(other.created_, false);
    }
    return *this;
  }
  ShmMem(const ShmMem&) = delete;
  ShmMem& operator=(const ShmMem&) = delete;
  // Unmaps; the object and its contents stay until unlink() and the last unmap.
  ~ShmMem() { release(); }

  void* data() const noexcept { return map_; }
  size_t size() const noexcept { return bytes_; }
  // True in the process that created and formatted the segment, false in those that attached.
  bool created() const noexcept { return created_; }

  // Both cover the whole mapping. mbind moves only the pages this process touched first.
  int mbind(int numa_node) const noexcept { return mem::bindToNode(map_, mapped_, numa_node); }
  int mlock() const noexcept { return mem::lockInRam(map_, mapped_); }

  // Removes the name (shm_unlink): 0, or -1 with errno (ENOENT when there is no such object).
  // Processes that have it mapped keep their mapping.
  static int unlink(const char* name) noexcept {
    if (name == nullptr) {
      errno = EINVAL;
      return -1;
    }
    return ::shm_unlink(name) == 0 ? 0 : -1;
  }

 private:
  struct Control {
    uint64_t magic;    // kMagic: this is a bitslab segment
    uint64_t bytes;    // SegmentSpec::bytes of the creator
    uint64_t layout;   // SegmentSpec::layout of the creator
    uint32_t version;  // kVersion: this trailer's format
    uint32_t state;    // kFormatting, then kReady (published last, with release)
  };
  static constexpr uint64_t kMagic = 0x62736c6162736567ull;  // "bslabseg"
  static constexpr uint32_t kVersion = 1;
  static constexpr uint32_t kFormatting = 0;  // what a fresh (zeroed) object reads
  static constexpr uint32_t kReady = 0x52454459;
  static_assert(std::atomic_ref<uint32_t>::is_always_lock_free,
                "the ready flag is shared between processes: it must be address-free");

  static constexpr size_t controlOffset(size_t bytes) { return (bytes + 63) & ~size_t{63}; }
  static constexpr size_t mappedBytes(size_t bytes) { return controlOffset(bytes) + 64; }
  static_assert(sizeof(Control) <= 64, "the control trailer is one cache line");

  Control* control() const noexcept {
    return reinterpret_cast<Control*>(static_cast<char*>(map_) + controlOffset(bytes_));
  }

  [[noreturn]] static void fail(int error, const char* what, const char* name) {
    throw std::system_error(error, std::generic_category(),
                            std::string("ShmMem '") + (name ? name : "(null)") + "': " + what);
  }

  // Spins, then sleeps, each wait twice as long as the last (up to 1 ms): a creator that is
  // about to publish is seen within nanoseconds, a slow one costs the waiters no CPU.
  class Backoff {
   public:
    void pause() noexcept {
      if (step_ < kSpinSteps) {
        for (unsigned i = 0; i < (1u << step_); ++i) BITSLAB_CPU_RELAX();
      } else {
        const unsigned shift = step_ - kSpinSteps;
        const long ns = shift < 20 ? std::min(1000L << shift, kMaxSleepNs) : kMaxSleepNs;
        const timespec delay{0, ns};
        ::nanosleep(&delay, nullptr);
      }
      ++step_;
    }

   private:
    static constexpr unsigned kSpinSteps = 10;
    static constexpr long kMaxSleepNs = 1000000;
    unsigned step_ = 0;
  };

  // Waits with backoff until ready() or the timeout; returns ready()'s last answer.
  template <class Ready>
  static bool waitUntil(Ready&& ready, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Backoff backoff;
    for (;;) {
      if (ready()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return ready();
      backoff.pause();
    }
  }

  void release() noexcept {
    if (map_ != nullptr) ::munmap(map_, mapped_);
    map_ = nullptr;
    mapped_ = 0;
    bytes_ = 0;
    created_ = false;
  }

  void* map_ = nullptr;
  size_t mapped_ = 0;  // the whole mapping, control trailer included
  size_t bytes_ = 0;   // the arena's part
  bool created_ = false;
};

inline ShmMem::ShmMem(const char* name, const ShmOptions& options, const SegmentSpec& spec)
    : mapped_(mappedBytes(spec.bytes)), bytes_(spec.bytes) {
  if (name == nullptr) fail(EINVAL, "no name given", name);

  // Create, or open what another process created. If the name disappears between the two
  // (an unlink in between), try creating again.
  int fd = -1;
  for (int attempt = 0;; ++attempt) {
    fd = ::shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
    if (fd >= 0) {
      created_ = true;
      break;
    }
    if (errno != EEXIST) fail(errno, "shm_open", name);
    fd = ::shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) break;
    if (errno != ENOENT || attempt == 8) fail(errno, "shm_open of an existing segment", name);
  }

  // On any failure from here on: close the descriptor and, if we created the object, remove it
  // (nobody else can use a segment that was never published).
  const auto abandon = [&](int error, const char* what) {
    ::close(fd);
    if (map_ != nullptr) ::munmap(map_, mapped_);
    map_ = nullptr;
    if (created_) ::shm_unlink(name);
    fail(error, what, name);
  };

  if (created_) {
    if (::ftruncate(fd, static_cast<off_t>(mapped_)) != 0) abandon(errno, "ftruncate");
  } else {
    // The creator sizes the object right after creating it: size 0 means "not yet".
    struct stat st {};
    int stat_error = 0;
    const bool sized = waitUntil(
        [&] {
          if (::fstat(fd, &st) != 0) {
            stat_error = errno;
            return true;
          }
          return st.st_size != 0;
        },
        options.attachTimeout);
    if (stat_error != 0) abandon(stat_error, "fstat");
    if (!sized) abandon(ETIMEDOUT, "timed out waiting for its creator to size it");
    if (static_cast<size_t>(st.st_size) != mapped_)
      abandon(EINVAL, "exists with a different size (another arena layout)");
  }

  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) abandon(errno, "mmap");
  map_ = p;
  ::close(fd);
  fd = -1;

  Control* c = control();
  std::atomic_ref<uint32_t> state(c->state);
  if (created_) {
    spec.format(map_);
    c->magic = kMagic;
    c->bytes = spec.bytes;
    c->layout = spec.layout;
    c->version = kVersion;
    // Publishes the formatted arena and the fields above to every acquire load of the state.
    state.store(kReady, std::memory_order_release);
    return;
  }

  uint32_t seen = kFormatting;
  const bool ready = waitUntil(
      [&] {
        seen = state.load(std::memory_order_acquire);
        return seen != kFormatting;
      },
      options.attachTimeout);
  const char* problem = nullptr;
  int error = EINVAL;
  if (!ready) {
    problem = "timed out waiting for its creator to format it";
    error = ETIMEDOUT;
  } else if (seen != kReady || c->magic != kMagic || c->version != kVersion) {
    problem = "is not a bitslab arena segment";
  } else if (c->bytes != spec.bytes || c->layout != spec.layout) {
    problem = "was made for a different arena layout";
  }
  if (problem != nullptr) {
    ::munmap(map_, mapped_);
    map_ = nullptr;
    mapped_ = 0;
    bytes_ = 0;
    fail(error, problem, name);
  }
}

}  // namespace bitslab
