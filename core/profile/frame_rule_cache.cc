#include "core/profile/frame_rule_cache.h"

#include <dlfcn.h>

#include <atomic>
#include <cstddef>

namespace bitslab::profile {

namespace {

constexpr size_t kSlots = 4096;  // a few hundred call sites are a big program's working set

struct Slot {
  std::atomic<uint64_t> pc{0};      // 0: empty (no walk looks up address 0)
  std::atomic<uint64_t> rule{0};    // FrameRule::pack()
  std::atomic<uint64_t> tables{0};  // the object's unwind tables the rule was read from
};

constinit Slot g_slots[kSlots];
constinit SpinLock g_writer;
constinit FindFdeFn g_find_fde = nullptr;

Slot& slot_of(uintptr_t pc) {
  // Return addresses differ in their low bits; a multiply spreads them over the index bits.
  return g_slots[(pc * 0x9E3779B97F4A7C15ull) >> (64 - 12)];
}
static_assert(kSlots == size_t{1} << 12, "the hash takes 12 bits");

}  // namespace

void set_frame_rule_source(FindFdeFn find_fde) { g_find_fde = find_fde; }

bool find_code_object(uintptr_t pc, CodeObject& object) {
  object = CodeObject{};
#if defined(DLFO_STRUCT_HAS_EH_DBASE)  // glibc 2.35 and later declare _dl_find_object
  struct dl_find_object found;
  if (_dl_find_object(reinterpret_cast<void*>(pc), &found) != 0) return false;
  object.start = reinterpret_cast<uintptr_t>(found.dlfo_map_start);
  object.end = reinterpret_cast<uintptr_t>(found.dlfo_map_end);
  object.tables = reinterpret_cast<uintptr_t>(found.dlfo_eh_frame);
  return true;
#else
  return false;  // no cache: every rule is read anew
#endif
}

FrameRule cached_frame_rule(uintptr_t pc, uintptr_t tables) {
  Slot& s = slot_of(pc);
  // A hit: the slot's address before and after its other words are read is pc, so they are
  // pc's. A writer clears the address before it stores them (release), so a reader that saw a
  // new word (acquire) sees the address cleared or changed at its second look. No fences:
  // ThreadSanitizer does not model them. (On x86-64 each of these is a plain mov.)
  if (tables != 0 && s.pc.load(std::memory_order_acquire) == pc) {
    const uint64_t word = s.rule.load(std::memory_order_acquire);
    const uint64_t from = s.tables.load(std::memory_order_acquire);
    if (s.pc.load(std::memory_order_relaxed) == pc && from == tables) return FrameRule::unpack(word);
  }
  const FrameRule rule = read_frame_rule(pc, g_find_fde);
  if (tables != 0 && g_writer.try_lock()) {
    s.pc.store(0, std::memory_order_relaxed);
    s.rule.store(rule.pack(), std::memory_order_release);
    s.tables.store(tables, std::memory_order_release);
    s.pc.store(pc, std::memory_order_release);
    g_writer.unlock();
  }
  return rule;
}

SpinLock& frame_rule_cache_lock() { return g_writer; }

}  // namespace bitslab::profile
