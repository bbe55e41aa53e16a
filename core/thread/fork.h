// core/thread/fork.h — the fork protocol: every lock of the core, and the one order in which
// fork() takes them (L5).
//
// fork() copies the address space with only the calling thread. A lock another thread held at
// that moment would stay held in the child forever, and its next malloc would spin. So the
// pthread_atfork handlers below take every lock before the copy (prefork), and release them in
// the parent and reset them in the child afterwards. Each layer owns its lock and exposes it
// as fork_lock(); this file alone knows them all and their order.
#pragma once
#include <cstddef>

#include "core/base/spin_lock.h"

namespace bitslab::fork_protocol {

struct NamedLock {
  const char* name;  // what the lock guards, for a test's message
  unsigned index;    // which one of several of that name (the pool class), else 0
  SpinLock* lock;
};

// Upper bound on locks(): enough for every pool class and the fixed ones.
inline constexpr size_t kMaxLocks = 72;

// The core's locks in the order prefork takes them, outermost first. Writes them to out
// (capacity kMaxLocks) and returns how many there are. Valid once process_init() has run.
size_t locks(NamedLock out[kMaxLocks]);

// The pthread_atfork handlers; bootstrap registers them once the core is ready.
void prefork();
void postfork_parent();
void postfork_child();

}  // namespace bitslab::fork_protocol
