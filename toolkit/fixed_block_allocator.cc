#include "toolkit/fixed_block_allocator.h"

#include <cerrno>
#include <stdexcept>

#include "core/base/bitmap.h"
#include "core/base/fatal.h"

namespace bitslab {

struct FixedBlockAllocator::PageHeader {
  uint64_t magic;  // kMagic ^ the owner's address: a page of another allocator does not match
  uint64_t block_count;
  // Then block_count bits, 1 = free (not handed out), in 64-bit words.
  uint64_t* free_bits() { return reinterpret_cast<uint64_t*>(this + 1); }
};

namespace {
constexpr uint64_t kMagic = 0x6669786564626c6bULL;  // "fixedblk"
constexpr size_t kBlockAlign = 16;

size_t header_bytes_for(size_t blocks) {
  const size_t bytes = sizeof(uint64_t) * (2 + (blocks + 63) / 64);
  return (bytes + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
}
}  // namespace

FixedBlockAllocator::FixedBlockAllocator(PageArena& arena, size_t block_size)
    : arena_(arena), block_bytes_(block_size) {
  const size_t page = arena.page_size();
  if (block_size < kBlockAlign || block_size % kBlockAlign != 0 || block_size > page ||
      block_size > page - header_bytes_for(1))  // two tests: block_size + header could wrap
    throw std::invalid_argument(
        "bitslab::FixedBlockAllocator: the block size must be a multiple of 16, at least 16, "
        "and fit in a page with its header");
  // The most blocks whose header and blocks fit in one page.
  size_t blocks = page / block_size;
  while (header_bytes_for(blocks) + blocks * block_size > page) --blocks;
  blocks_per_page_ = blocks;
  header_bytes_ = header_bytes_for(blocks);
}

uint64_t FixedBlockAllocator::page_magic() const {
  return kMagic ^ static_cast<uint64_t>(reinterpret_cast<uintptr_t>(this));
}

bool FixedBlockAllocator::refill() {
  auto* page = static_cast<char*>(arena_.alloc_page());
  if (page == nullptr) return false;  // errno = ENOMEM from the arena
  auto* header = reinterpret_cast<PageHeader*>(page);
  header->magic = page_magic();
  header->block_count = blocks_per_page_;
  init_free_bits(header->free_bits(), (blocks_per_page_ + 63) / 64, blocks_per_page_);
  // Pushed last to first, so blocks are handed out in address order.
  for (size_t i = blocks_per_page_; i-- > 0;) {
    auto* block = reinterpret_cast<FreeBlock*>(page + header_bytes_ + i * block_bytes_);
    block->next = free_;
    free_ = block;
  }
  ++pages_;
  return true;
}

void* FixedBlockAllocator::allocate() {
  if (free_ == nullptr && !refill()) return nullptr;  // cold: once per blocks_per_page()
  FreeBlock* block = free_;
  free_ = block->next;
  PageHeader* header = header_of(block);
  const size_t index = (reinterpret_cast<char*>(block) - reinterpret_cast<char*>(header) -
                        header_bytes_) / block_bytes_;
  header->free_bits()[index / 64] &= ~(uint64_t{1} << (index % 64));
  ++live_;
  return block;
}

FixedBlockAllocator::PageHeader* FixedBlockAllocator::header_of(const void* p) const {
  const uintptr_t page_mask = ~(uintptr_t{arena_.page_size()} - 1);
  return reinterpret_cast<PageHeader*>(reinterpret_cast<uintptr_t>(p) & page_mask);
}

void FixedBlockAllocator::deallocate(void* p) {
  if (p == nullptr) return;
  // Checked before p's page is read: a pointer outside the arena's handed-out pages.
  if (!arena_.contains(p)) fatal("FixedBlockAllocator: pointer not from its arena:", p);
  PageHeader* header = header_of(p);
  const size_t offset = static_cast<size_t>(static_cast<char*>(p) - reinterpret_cast<char*>(header));
  if (header->magic != page_magic())
    fatal("FixedBlockAllocator: pointer in a page of another allocator:", p);
  if (offset < header_bytes_ || (offset - header_bytes_) % block_bytes_ != 0 ||
      (offset - header_bytes_) / block_bytes_ >= header->block_count)
    fatal("FixedBlockAllocator: pointer not at the start of a block:", p);
  const size_t index = (offset - header_bytes_) / block_bytes_;
  if (!set_free_bit(header->free_bits(), index)) fatal("FixedBlockAllocator: double free of", p);
  auto* block = static_cast<FreeBlock*>(p);
  block->next = free_;
  free_ = block;
  --live_;
}

double FixedBlockAllocator::overhead_per_block() const {
  const size_t page = arena_.page_size();
  return static_cast<double>(page - blocks_per_page_ * block_bytes_) /
         static_cast<double>(blocks_per_page_);
}

}  // namespace bitslab
