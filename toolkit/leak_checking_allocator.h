// toolkit/leak_checking_allocator.h — an allocator wrapper that knows every live block and
// reports the ones never freed (the "Page Allocator" seed's GeneralPurposeAllocator with its
// leak check on deinit).
//
//   bitslab::LeakCheckingAllocator checked;               // over bitslab's core by default
//   void* p = checked.allocate(64);
//   checked.deallocate(p);
//   if (checked.deinit() == bitslab::LeakCheckingAllocator::Check::leak) { /* report */ }
//
// Every block gets a 32-byte BlockHeader right in front of it (for an alignment above 32 the
// block starts `alignment` bytes into the backing block) that links it into an intrusive
// doubly-linked list of live blocks and records its size and a tag. The list is what
// deinit() walks to name the leaks; the tag is what lets deallocate tell a live block of this
// allocator from a block freed already (double free), a pointer it never handed out (foreign
// pointer) or a header the program overwrote: each aborts through bitslab::fatal, naming the
// address, before the backing allocator sees the pointer. No std container and no malloc:
// the headers live in the blocks, reports are written with write(2) from a stack buffer.
//
// The backing allocator is a pair of functions (BackingAllocator): by default bitslab's core
// (bitslab::aligned_alloc / bitslab::free, so blocks up to 256 KiB minus the header), or any
// allocate/deallocate pair with a context pointer (an arena, a fixed buffer, a pool).
//
// Thread-safety: allocate, deallocate, allocated_size and the counters may be called from
// several threads at once (a spin lock guards the list; the backing allocator is called
// outside it and must be thread-safe itself, as the core is). deinit() and the destructor
// must not run while another thread uses the allocator.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/api/bitslab.h"
#include "core/base/bits.h"
#include "core/base/fatal.h"
#include "core/base/line_writer.h"
#include "core/base/spin_lock.h"

namespace bitslab {

// Where a LeakCheckingAllocator's memory comes from. allocate returns `bytes` aligned to
// `alignment` (a power of two, at least 16) or nullptr (errno set, or ENOMEM is assumed);
// deallocate gets back exactly what allocate returned, with the same bytes and alignment.
// owns, if given, says whether p lies in memory the backing hands out and must never fault:
// deallocate asks it before reading the header in front of a pointer, so a foreign pointer
// is reported instead of crashing on an unmapped address.
struct BackingAllocator {
  void* (*allocate)(void* context, size_t bytes, size_t alignment) = nullptr;
  void (*deallocate)(void* context, void* block, size_t bytes, size_t alignment) = nullptr;
  bool (*owns)(void* context, const void* p) = nullptr;  // optional
  void* context = nullptr;

  // bitslab's core allocator (core/api/bitslab.h).
  static BackingAllocator bitslab_core() {
    return {
        [](void*, size_t bytes, size_t alignment) { return bitslab::aligned_alloc(alignment, bytes); },
        [](void*, void* block, size_t, size_t) { bitslab::free(block); },
        [](void*, const void* p) { return bitslab::owns(p); },
        nullptr,
    };
  }
};

// Called once per leaked block by deinit() instead of the report on stderr. It may call the
// allocator, and may free the block it is given (a reported leak goes to the backing when
// freed), but no other leaked block: deinit() is still walking them.
using LeakReporter = void (*)(void* context, const void* block, size_t bytes);

struct LeakCheckOptions {
  // The destructor aborts, with one line naming the leaked blocks' count and bytes, when its
  // check (or the last deinit() called) found a leak: for tests that must fail on a leak.
  bool fail_on_leak = false;
  LeakReporter reporter = nullptr;  // nullptr: one line per leak on stderr
  void* reporter_context = nullptr;
  size_t max_report_lines = 20;  // stderr report: lines for single blocks, then a count
};

class LeakCheckingAllocator {
 public:
  enum class Check { ok, leak };

  // The header in front of every block: the list links, the size and alignment asked for, and
  // the tag. The tag's high half says what the block is (live in this allocator, reported as
  // leaked by it, or freed); its low half is a check value over the other fields and the
  // header's address, so a header overwritten by the program is detected before its links
  // are followed. The tag comes last, next to the block, where a small out-of-bounds write
  // below the block lands first.
  struct BlockHeader {
    BlockHeader* prev;
    BlockHeader* next;
    size_t bytes;             // as asked for
    uint32_t alignment_log2;  // as asked for: gives the offset and the backing's alignment
    uint32_t tag;             // (kind << 16) | check value, or kFreedTag
  };
  static constexpr size_t kHeaderBytes = sizeof(BlockHeader);
  static_assert(kHeaderBytes == 32, "a 16-byte aligned backing block keeps the user's 16-aligned");

  explicit LeakCheckingAllocator(LeakCheckOptions options = {},
                                 BackingAllocator backing = BackingAllocator::bitslab_core()) noexcept
      : backing_(backing), options_(options) {
    head_.prev = head_.next = &head_;
    // The kinds and check values depend on this allocator's address, so a block of another
    // LeakCheckingAllocator is told apart too (the allocator is not movable: its address is
    // its identity).
    salt_ = mix(reinterpret_cast<uintptr_t>(this) ^ 0x2545f4914f6cdd1dull);
    live_kind_ = static_cast<uint16_t>(salt_ >> 48);
    if (live_kind_ == kFreedTag >> 16) live_kind_ ^= 1;
    leaked_kind_ = static_cast<uint16_t>(live_kind_ ^ 0x5a5a);
    if (leaked_kind_ == kFreedTag >> 16) leaked_kind_ ^= 0x0101;
  }
  ~LeakCheckingAllocator() {
    if (!checked_) deinit();
    if (options_.fail_on_leak && last_leaked_blocks_ != 0) abort_on_leak();
  }
  LeakCheckingAllocator(const LeakCheckingAllocator&) = delete;
  LeakCheckingAllocator& operator=(const LeakCheckingAllocator&) = delete;

  // `bytes` aligned to `alignment`. bytes == 0 gives a distinct block, as malloc(0) does.
  // nullptr + EINVAL: alignment not a power of two. nullptr + ENOMEM: bytes + header
  // overflows, or the backing allocator refuses (its errno is kept).
  void* allocate(size_t bytes, size_t alignment = alignof(std::max_align_t)) noexcept {
    if (!is_pow2(alignment)) {
      errno = EINVAL;
      return nullptr;
    }
    const size_t offset = offset_for(alignment);
    if (bytes > SIZE_MAX - offset) {
      errno = ENOMEM;
      return nullptr;
    }
    const int saved_errno = errno;
    errno = 0;
    void* base = backing_.allocate(backing_.context, offset + bytes, backing_alignment_for(alignment));
    if (base == nullptr) {
      if (errno == 0) errno = ENOMEM;  // a user-written backing may not set it
      return nullptr;
    }
    errno = saved_errno;
    char* block = static_cast<char*>(base) + offset;
    auto* h = reinterpret_cast<BlockHeader*>(block - kHeaderBytes);
    h->bytes = bytes;
    h->alignment_log2 = log2_floor(alignment);
    SpinGuard guard(lock_);
    BlockHeader* newest = head_.next;
    verify_neighbour(newest);
    h->prev = &head_;  // newest first
    h->next = newest;
    newest->prev = h;
    head_.next = h;
    seal(h, live_kind_);
    if (newest != &head_) seal(newest, live_kind_);
    ++live_blocks_;
    live_bytes_ += bytes;
    checked_ = false;
    return block;
  }

  // Frees a block of this allocator (nullptr: nothing). Aborts naming p on a double free, on
  // a pointer this allocator never handed out, or on a header overwritten by the program (its
  // own, or a neighbour's in the list, which is named instead).
  // A block that deinit() reported as leaked may still be freed: it goes to the backing.
  void deallocate(void* p) noexcept {
    if (p == nullptr) return;
    BlockHeader* h;
    {
      SpinGuard guard(lock_);
      h = checked_header(p);
      if (kind_of(h) == live_kind_) {
        BlockHeader* prev = h->prev;
        BlockHeader* next = h->next;
        verify_neighbour(prev);
        verify_neighbour(next);
        prev->next = next;
        next->prev = prev;
        if (prev != &head_) seal(prev, live_kind_);
        if (next != &head_) seal(next, live_kind_);
        --live_blocks_;
        live_bytes_ -= h->bytes;
      }
      h->tag = kFreedTag;  // under the lock: a racing second free of p sees it
    }
    give_back(h);
  }
  // As deallocate(p), and aborts naming p when bytes is not the size it was allocated with
  // (Zig's GeneralPurposeAllocator checks the length of the slice freed likewise).
  void deallocate(void* p, size_t bytes) noexcept {
    if (p == nullptr) return;
    if (allocated_size(p) != bytes) fatal("LeakCheckingAllocator: free with a wrong size of", p);
    deallocate(p);
  }

  // The size p was allocated with; aborts like deallocate when p is not a live block.
  size_t allocated_size(const void* p) const noexcept {
    SpinGuard guard(lock_);
    return checked_header(p)->bytes;
  }

  size_t live_blocks() const noexcept {
    SpinGuard guard(lock_);
    return live_blocks_;
  }
  size_t live_bytes() const noexcept {  // as asked for: headers and padding not included
    SpinGuard guard(lock_);
    return live_bytes_;
  }

  // Zig's gpa.deinit(): reports every block still live (to options.reporter, or to stderr:
  // "bitslab: leak: block 0x... of N bytes", at most max_report_lines such lines, then how
  // many more, then a total) and returns leak, or ok when there is none. The leaked blocks
  // are not freed (code may still use them) but forgotten: afterwards the allocator is empty
  // and usable again. The destructor calls it unless it was the last call. A block whose
  // header was overwritten aborts the walk, naming the block.
  Check deinit() noexcept {
    BlockHeader* first;
    size_t blocks, bytes;
    {
      SpinGuard guard(lock_);
      first = head_.next;
      blocks = live_blocks_;
      bytes = live_bytes_;
      head_.prev = head_.next = &head_;
      live_blocks_ = live_bytes_ = 0;
      checked_ = true;
      last_leaked_blocks_ = blocks;
      last_leaked_bytes_ = bytes;
    }
    // The detached chain still ends at &head_; nothing links to it any more.
    size_t index = 0;
    for (BlockHeader* h = first; h != &head_; ++index) {
      verify_neighbour(h);
      BlockHeader* next = h->next;  // read first: the reporter may free h
      h->prev = h->next = nullptr;
      seal(h, leaked_kind_);
      const void* block = block_of(h);
      if (options_.reporter != nullptr) {
        options_.reporter(options_.reporter_context, block, h->bytes);
      } else if (index < options_.max_report_lines) {
        LineWriter line;
        line.text("bitslab: leak: block ").hex(reinterpret_cast<unsigned long>(block));
        line.text(" of ").dec(h->bytes).text(" bytes").flush();
      }
      h = next;
    }
    if (blocks == 0) return Check::ok;
    if (options_.reporter == nullptr) {
      LineWriter line;
      if (blocks > options_.max_report_lines) {
        line.text("bitslab: leak: ... and ").dec(blocks - options_.max_report_lines);
        line.text(" more blocks").flush();
      }
      line.text("bitslab: leak: ").dec(blocks).text(blocks == 1 ? " block, " : " blocks, ");
      line.dec(bytes).text(" bytes not freed").flush();
    }
    return Check::leak;
  }

  void set_fail_on_leak(bool fail) noexcept { options_.fail_on_leak = fail; }

 private:
  static constexpr uint32_t kFreedTag = 0xdeadf7ee;

  static uint64_t mix(uint64_t x) {  // a 64-bit finalizer: every input bit moves every output bit
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  }
  // The tag a header of this kind must carry: the kind, and 16 bits over every other field.
  uint32_t tag_for(const BlockHeader* h, uint16_t kind) const {
    uint64_t x = salt_ ^ reinterpret_cast<uintptr_t>(h);
    x = mix(x ^ reinterpret_cast<uintptr_t>(h->prev));
    x = mix(x ^ reinterpret_cast<uintptr_t>(h->next));
    x = mix(x ^ h->bytes ^ (uint64_t{h->alignment_log2} << 58));
    return (uint32_t{kind} << 16) | static_cast<uint16_t>(x);
  }
  void seal(BlockHeader* h, uint16_t kind) const { h->tag = tag_for(h, kind); }
  static uint16_t kind_of(const BlockHeader* h) { return static_cast<uint16_t>(h->tag >> 16); }
  static void* block_of(BlockHeader* h) { return reinterpret_cast<char*>(h) + kHeaderBytes; }

  // A header about to be relinked (or walked) must be intact, or the damage would be sealed
  // in. Lock held.
  void verify_neighbour(BlockHeader* h) const {
    if (h != &head_ && h->tag != tag_for(h, live_kind_))
      fatal("LeakCheckingAllocator: block header overwritten (a write out of bounds?) at", block_of(h));
  }

  // The header ends where the block starts, and the block must start on a multiple of the
  // alignment: the offset from the backing block's start is the header size rounded up to it
  // (the header alone for alignments up to 32).
  static size_t offset_for(size_t alignment) { return alignment > kHeaderBytes ? alignment : kHeaderBytes; }
  // The backing block must be aligned so that block = base + offset is: to the alignment, and
  // to at least 16 so the header's fields are aligned and 16-byte blocks stay so.
  static size_t backing_alignment_for(size_t alignment) { return alignment > 16 ? alignment : 16; }

  // The header of p if p is a block this allocator handed out (live, or reported as leaked)
  // with an intact header; otherwise aborts naming p. Lock held.
  BlockHeader* checked_header(const void* p) const {
    const uintptr_t address = reinterpret_cast<uintptr_t>(p);
    // Every block is at least 16-byte aligned; anything else was never ours, and its header
    // must not be read (a misaligned load, or an address below the first page).
    if (address % 16 != 0 || address < 4096)
      fatal("LeakCheckingAllocator: free of a pointer it never handed out:", p);
    auto* h = reinterpret_cast<BlockHeader*>(address - kHeaderBytes);
    if (backing_.owns != nullptr &&
        (!backing_.owns(backing_.context, h) || !backing_.owns(backing_.context, static_cast<const char*>(p) - 1)))
      fatal("LeakCheckingAllocator: free of a pointer it never handed out:", p);
    if (h->tag == kFreedTag) fatal("LeakCheckingAllocator: double free of", p);
    const uint16_t kind = kind_of(h);
    if (kind != live_kind_ && kind != leaked_kind_)
      fatal("LeakCheckingAllocator: free of a pointer it never handed out:", p);
    if (h->tag != tag_for(h, kind))
      fatal("LeakCheckingAllocator: block header overwritten (a write out of bounds?) at", p);
    return h;
  }

  void give_back(BlockHeader* h) {
    const size_t alignment = size_t{1} << h->alignment_log2;
    const size_t offset = offset_for(alignment);
    char* base = reinterpret_cast<char*>(h) + kHeaderBytes - offset;
    backing_.deallocate(backing_.context, base, offset + h->bytes, backing_alignment_for(alignment));
  }

  [[noreturn]] void abort_on_leak() const {
    LineWriter line;
    line.text("bitslab: LeakCheckingAllocator: ").dec(last_leaked_blocks_);
    line.text(last_leaked_blocks_ == 1 ? " leaked block, " : " leaked blocks, ");
    line.dec(last_leaked_bytes_).text(" bytes (fail_on_leak)").flush();
    abort();
  }

  BackingAllocator backing_;
  LeakCheckOptions options_;
  mutable SpinLock lock_;
  BlockHeader head_{};  // sentinel of the circular list of live blocks, newest after it
  uint64_t salt_ = 0;
  uint16_t live_kind_ = 0;
  uint16_t leaked_kind_ = 0;
  size_t live_blocks_ = 0;
  size_t live_bytes_ = 0;
  bool checked_ = false;  // deinit() ran and nothing was allocated since
  size_t last_leaked_blocks_ = 0;
  size_t last_leaked_bytes_ = 0;
};

}  // namespace bitslab
