// core/profile/frame_rule_cache.h — the frame rules (core/profile/frame_rule.h) of the code
// addresses the profiler's stack walks have met, so that a walk through known call sites costs
// a few loads a frame instead of a search and interpretation of the DWARF tables (L3).
//
// A fixed table of 4096 slots in .bss (zero pages until a walk touches them), one rule per
// slot, direct-mapped by address: a collision costs a new reading of the tables, never a
// wrong rule. Readers take no lock (each slot's words are read like a seqlock's); writers take
// a lock they only try, and skip the store when it is busy, so a walk never waits.
//
// A rule is kept with the address of the unwind tables of the object it was read from: when a
// shared object is unloaded and another is loaded where it was, the old rules no longer match
// and are read anew. The object comes from glibc's _dl_find_object, which takes no lock (so a
// child forked while another thread was in the loader does not hang in it, as it would in
// dl_iterate_phdr) and is safe in a signal handler.
#pragma once
#include <cstdint>

#include "core/base/spin_lock.h"
#include "core/profile/frame_rule.h"

namespace bitslab::profile {

// Uses find_fde (libgcc's _Unwind_Find_FDE) for the rules not cached. Before the first walk.
void set_frame_rule_source(FindFdeFn find_fde);

// A loaded object's code: [start, end), and where its unwind tables are (0: none found).
struct CodeObject {
  uintptr_t start = 0, end = 0, tables = 0;
  bool contains(uintptr_t pc) const { return pc - start < end - start; }
};
// The object that holds pc; false (and `object` emptied) when none does (JIT code).
bool find_code_object(uintptr_t pc, CodeObject& object);

// The rule at pc (see read_frame_rule), pc being in the object whose tables are at `tables`:
// from the cache when it has it. tables 0: read, and not cached.
FrameRule cached_frame_rule(uintptr_t pc, uintptr_t tables);

// The writers' lock, for the fork protocol (core/thread/fork.cc). Code holding it takes no other.
SpinLock& frame_rule_cache_lock();

}  // namespace bitslab::profile
