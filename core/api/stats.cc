#include "core/api/stats.h"

#include <unistd.h>

#include "core/api/census.h"
#include "core/backend/backend.h"
#include "core/backend/page_heap.h"
#include "core/base/line_writer.h"
#include "core/base/options.h"
#include "core/large/guarded_blocks.h"
#include "core/os/heap_range.h"
#include "core/thread/bootstrap.h"
#include "core/thread/heap_registry.h"

namespace bitslab {

std::atomic<uint64_t> detail::g_system_requests{0};
std::atomic<uint64_t> detail::g_system_bytes{0};

namespace {
struct AllCounts {
  ThreadHeap::ClassCounts small[kSmallClassCount];
  ThreadHeap::ClassCounts pool[kPoolClassCount];
};
void add_heap(const ThreadHeap* heap, void* ctx) {
  auto* all = static_cast<AllCounts*>(ctx);
  heap->add_counts(all->small, all->pool);
}
ClassStats class_stats(size_t bytes, const ThreadHeap::ClassCounts& c, uint64_t live, uint64_t held) {
  return {bytes, c.allocs, c.frees, live, c.peak > live ? c.peak : live, held > live ? held : live};
}

// Totals the core keeps as counters: cheap, no walk over heaps or slabs.
void collect_totals(ProcessStats& s) {
  CachedPageAllocator& cache = backend::slab_pages();
  const CachedPageAllocator::CacheHitSummary hits = cache.cache_hit_summary();
  s.page_cache_hits = hits.sum;
  s.page_cache_calls = hits.num;
  s.page_cache_pages = cache.free_page_num();
  s.page_cache_capacity = cache.free_page_capacity();
  s.pages_purged = cache.pages_purged();
  SystemPageAllocator& slab_system = backend::slab_system_pages();
  s.slab_pages_in_use = slab_system.pages_in_use() - s.page_cache_pages;
  uint64_t pool_resident = 0;
  uint64_t pool_decommitted = 0;
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls) {
    const ChunkPool& pool = backend::pools().pool(cls);
    s.pool_regions += pool.region_count();
    s.pool_chunks_carved += pool.carved_chunks();
    pool_resident += pool.resident_bytes();
    pool_decommitted += pool.decommitted_bytes();
  }
  s.heaps = HeapRegistry::heap_count();
  s.heaps_in_use = HeapRegistry::heaps_in_use();
  s.large_blocks = guarded::live_blocks();
  s.large_bytes = guarded::live_bytes();
  s.reserved_bytes = HeapRange::mapped_bytes();
  s.committed_bytes = slab_system.pages_in_use() * kSlabBytes + pool_resident + s.large_bytes;
  const PageHeap::Counts heap = backend::page_heap().counts();
  s.returned_bytes = slab_system.bytes_returned() + pool_decommitted + heap.decommitted_bytes;
  s.unmapped_bytes = HeapRange::unmapped_bytes();
  s.page_heap_takes = heap.takes;
  s.page_heap_hits = heap.hits;
  s.page_heap_free_granules = heap.free_granules;
  s.system_requests = detail::g_system_requests.load(std::memory_order_relaxed);
  s.system_bytes = detail::g_system_bytes.load(std::memory_order_relaxed);
}

// Per class, from every heap's counters and the census (a walk over heaps and slab pages).
void collect_classes(ProcessStats& s) {
  AllCounts counts{};
  HeapRegistry::for_each_heap(add_heap, &counts);
  const Census census = take_census();
  for (unsigned cls = 0; cls < kSmallClassCount; ++cls) {
    // A free another thread made is counted by the owner when it applies it; until then it is
    // in flight, and counted here, so that allocs - frees == live.
    counts.small[cls].frees += census.in_flight[cls];
    s.small[cls] = class_stats(kSmallClassBytes[cls], counts.small[cls], census.small_blocks[cls],
                               census.small_capacity[cls]);
  }
  for (unsigned cls = 0; cls < kPoolClassCount; ++cls)
    s.pool[cls] = class_stats(pool_class_bytes(cls), counts.pool[cls], census.pool_chunks[cls],
                              backend::pools().pool(cls).carved_chunks());
  s.live_bytes = census.bytes();
}
}  // namespace

ProcessStats collect_stats(StatsDetail detail) {
  process_init();
  ProcessStats s{};
  collect_totals(s);
  if (detail == StatsDetail::kByClass) collect_classes(s);
  return s;
}

namespace {

void print_text(int fd, const ProcessStats& s) {
  LineWriter line;
  line.text("bitslab: stats, pid ").dec(static_cast<unsigned long>(getpid()))
      .text(kHardened ? ", hardened build" : ", default build").flush(fd);
  line.text("bitslab:   kind    size       allocs        frees       live       peak").flush(fd);
  auto row = [&](const char* kind, const ClassStats& c) {
    if (c.allocs == 0 && c.live == 0) return;
    line.text("bitslab:   ").text(kind).dec(c.block_bytes, 8).dec(c.allocs, 13).dec(c.frees, 13)
        .dec(c.live, 11).dec(c.peak, 11).flush(fd);
  };
  for (const ClassStats& c : s.small) row("small", c);
  for (const ClassStats& c : s.pool) row("pool ", c);
  if (s.large_blocks != 0)
    line.text("bitslab:   large blocks (guarded): ").dec(s.large_blocks).text(" live, ")
        .dec(s.large_bytes).text(" bytes").flush(fd);
  const uint64_t permille = s.page_cache_calls == 0 ? 0 : s.page_cache_hits * 1000 / s.page_cache_calls;
  line.text("bitslab:   page cache: ").dec(s.page_cache_hits).text(" hits of ").dec(s.page_cache_calls)
      .text(" calls (").dec(permille / 10).text(".").dec(permille % 10).text("%), ")
      .dec(s.page_cache_pages).text(" of ").dec(s.page_cache_capacity).text(" pages cached, ")
      .dec(s.pages_purged).text(" purged").flush(fd);
  line.text("bitslab:   memory: ").dec(s.live_bytes).text(" B live, ").dec(s.committed_bytes)
      .text(" B committed, ").dec(s.reserved_bytes).text(" B reserved, ").dec(s.returned_bytes)
      .text(" B returned to the OS").flush(fd);
  line.text("bitslab:   page heap: ")
      .dec(s.page_heap_hits)
      .text(" hits of ")
      .dec(s.page_heap_takes)
      .text(" granule requests, ")
      .dec(s.page_heap_free_granules)
      .text(" free granules kept, ")
      .dec(s.unmapped_bytes)
      .text(" B unmapped")
      .flush(fd);
  line.text("bitslab:   system allocator: ").dec(s.system_requests).text(" requests, ")
      .dec(s.system_bytes).text(" B (blocks over ").dec(large_threshold()).text(" B)").flush(fd);
}

// One JSON object on one line, written in parts: each part goes out before the next starts,
// so none can pass the buffer's 256 bytes and be cut (the longest, a class entry with four
// 20-digit counts, is about 140).
void print_json(int fd, const ProcessStats& s) {
  LineWriter out;
  auto part = [&](auto&& build) {
    out.send(fd);
    build();
  };
  out.text("{\"pid\":").dec(static_cast<unsigned long>(getpid()))
      .text(",\"build\":\"").text(kHardened ? "hardened" : "default").text("\",\"classes\":[");
  bool first = true;
  auto entry = [&](const char* kind, const ClassStats& c) {
    if (c.allocs == 0 && c.live == 0) return;
    part([&] {
      out.text(first ? "" : ",").text("{\"kind\":\"").text(kind).text("\",\"size\":").dec(c.block_bytes)
          .text(",\"allocs\":").dec(c.allocs).text(",\"frees\":").dec(c.frees)
          .text(",\"live\":").dec(c.live).text(",\"peak\":").dec(c.peak).text("}");
    });
    first = false;
  };
  for (const ClassStats& c : s.small) entry("small", c);
  for (const ClassStats& c : s.pool) entry("pool", c);
  part([&] {
    out.text("],\"large\":{\"live\":").dec(s.large_blocks).text(",\"bytes\":").dec(s.large_bytes)
        .text("},\"page_cache\":{\"hits\":").dec(s.page_cache_hits).text(",\"calls\":").dec(s.page_cache_calls);
  });
  part([&] {
    out.text(",\"cached_pages\":").dec(s.page_cache_pages).text(",\"capacity\":").dec(s.page_cache_capacity)
        .text(",\"purged_pages\":").dec(s.pages_purged).text("}");
  });
  part([&] {
    out.text(",\"bytes\":{\"live\":")
        .dec(s.live_bytes)
        .text(",\"committed\":")
        .dec(s.committed_bytes)
        .text(",\"reserved\":")
        .dec(s.reserved_bytes)
        .text(",\"returned\":")
        .dec(s.returned_bytes)
        .text(",\"unmapped\":")
        .dec(s.unmapped_bytes)
        .text("}");
  });
  part([&] {
    out.text(",\"page_heap\":{\"takes\":")
        .dec(s.page_heap_takes)
        .text(",\"hits\":")
        .dec(s.page_heap_hits)
        .text(",\"free_granules\":")
        .dec(s.page_heap_free_granules)
        .text("}");
  });
  part([&] {
    out.text(",\"system\":{\"requests\":").dec(s.system_requests).text(",\"bytes\":").dec(s.system_bytes)
        .text(",\"above\":").dec(large_threshold()).text("}}");
  });
  out.flush(fd);
}

}  // namespace

void print_stats(int fd, bool json) {
  const ProcessStats s = collect_stats(StatsDetail::kByClass);
  if (json) print_json(fd, s);
  else print_text(fd, s);
}

}  // namespace bitslab
