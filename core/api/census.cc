#include "core/api/census.h"

#include "core/backend/backend.h"
#include "core/base/line_writer.h"
#include "core/base/options.h"
#include "core/large/guarded_blocks.h"
#include "core/small/remote_frees.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

size_t Census::blocks() const {
  size_t n = 0;
  for (size_t b : small_blocks) n += b;
  for (size_t c : pool_chunks) n += c;
  return n + large_blocks;
}

size_t Census::bytes() const {
  size_t n = 0;
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) n += small_blocks[cls] * kSmallClassBytes[cls];
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) n += pool_chunks[cls] * pool_class_bytes(cls);
  return n + large_bytes;
}

namespace {
// live -= held, stopping at 0: a heap's thread may run while the census walks, so what it
// holds can momentarily exceed what the bitmaps counted.
void subtract_floored(size_t& live, size_t held) { live -= held < live ? held : live; }
void count_slab(void* page, void* ctx) {
  const Slab* s = Slab::of(page);
  if (!s->live()) return;  // a cached empty page: its header was retired
  Census* census = static_cast<Census*>(ctx);
  // Blocks freed by another thread and not yet applied are out in the bitmap, and not live.
  size_t live = s->count_used();
  const size_t in_flight = RemoteFrees::count(s);
  subtract_floored(live, in_flight);
  census->small_blocks[s->size_class] += live;
  census->in_flight[s->size_class] += in_flight;
  census->small_capacity[s->size_class] += s->capacity;
}
void subtract_held(const ThreadHeap* heap, void* ctx) {
  size_t cached[kSmallClassCount] = {};
  heap->count_cached_blocks(cached);
  Census* census = static_cast<Census*>(ctx);
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls)
    subtract_floored(census->small_blocks[cls], cached[cls]);
  size_t cached_chunks[kPoolClassCount] = {};
  heap->count_cached_chunks(cached_chunks);
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    subtract_floored(census->pool_chunks[cls], cached_chunks[cls]);
}
}  // namespace

Census take_census() {
  process_init();
  Census census{};
  backend::slab_system_pages().for_each_page_in_use(count_slab, &census);
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    census.pool_chunks[cls] = backend::pools().pool(cls).live_chunks();
  HeapRegistry::for_each_heap(subtract_held, &census);
  census.large_blocks = guarded::live_blocks();
  census.large_bytes = guarded::live_bytes();
  return census;
}

void print_leak_report(int fd) {
  const Census census = take_census();
  LineWriter line;
  if (census.blocks() == 0) {
    line.text("bitslab: leak check: no blocks still allocated at exit").flush(fd);
  } else {
    line.text("bitslab: leak check: ").dec(census.blocks()).text(" blocks (")
        .dec(census.bytes()).text(" bytes) still allocated at exit").flush(fd);
    line.text("bitslab:   kind   class bytes     blocks        bytes").flush(fd);
    auto row = [&line, fd](const char* kind, size_t class_bytes, size_t blocks) {
      if (blocks == 0) return;
      line.text("bitslab:   ").text(kind).dec(class_bytes, 12).dec(blocks, 11)
          .dec(blocks * class_bytes, 13).flush(fd);
    };
    for (unsigned cls = 0; cls < kSmallClassCount; ++cls)
      row("small", kSmallClassBytes[cls], census.small_blocks[cls]);
    for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
      row("pool ", pool_class_bytes(cls), census.pool_chunks[cls]);
    if (census.large_blocks != 0)
      line.text("bitslab:   large  (any size)").dec(census.large_blocks, 11)
          .dec(census.large_bytes, 13).flush(fd);
  }
  if constexpr (!kHardened)
    line.text("bitslab: leak check: blocks over ").dec(large_threshold())
        .text(" bytes come from the system allocator and are not counted").flush(fd);
}

}  // namespace bitslab
