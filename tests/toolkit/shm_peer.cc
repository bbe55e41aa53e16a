// tests/toolkit/shm_peer.cc — the separately started second process of the shared slab arena
// test (tests/toolkit/slab_arena_test.cc starts it with posix_spawn): it attaches the arena by
// name, as an unrelated program would, and works in it.
//
//   toolkit_shm_peer NAME MAILBOX_OFFSET PARENT_CHUNK_OFFSET COUNT
//     Attaches NAME as PeerArena, checks that the chunk at PARENT_CHUNK_OFFSET holds the
//     parent's greeting and frees it (a chunk allocated in another process), allocates COUNT
//     64-byte chunks, fills each with the pattern below, and records them in the mailbox (a
//     chunk of the parent's at MAILBOX_OFFSET): word 0 = COUNT, word 1 + i = chunk i's offset.
//   toolkit_shm_peer --expect-mismatch NAME
//     Attaches NAME as another arena type, which must be refused (std::system_error).
//
// Pattern of chunk i: bytes 0-3 kPeerMagic, bytes 4-7 i, bytes 8-63 (uint8_t)(i + 1).
// PeerArena, the mailbox and the pattern must match slab_arena_test.cc (the arena itself would
// refuse a different layout: exit code 3).
//
// Exit codes: 0 done; 2 usage; 3 attach failed; 4 the parent's chunk is wrong; 5 the pool is
// exhausted; 6 a mismatched attach was accepted.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <unistd.h>

#include "toolkit/slab_arena.h"

namespace {

using PeerArena = bitslab::ShmMem::Allocator<32, 64, 512>;
using OtherArena = bitslab::ShmMem::Allocator<32, 64, 1024>;
constexpr uint32_t kPeerMagic = 0x50454552;  // "PEER"
constexpr const char kGreeting[] = "hello, peer";

size_t parseSize(const char* text) { return static_cast<size_t>(std::strtoull(text, nullptr, 10)); }

int expectMismatch(const char* name) {
  try {
    OtherArena arena(name);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "shm_peer: refused as expected: %s\n", e.what());
    return 0;
  }
  std::fprintf(stderr, "shm_peer: %s was attached with a different layout\n", name);
  return 6;
}

int work(const char* name, size_t mailbox_offset, size_t parent_offset, size_t count) {
  try {
    PeerArena arena(name);
    if (arena.backend().created()) {
      std::fprintf(stderr, "shm_peer: %s did not exist\n", name);
      return 3;
    }
    auto* mailbox = static_cast<uint64_t*>(arena.atOffset(mailbox_offset));
    auto* greeting = static_cast<char*>(arena.atOffset(parent_offset));
    if (mailbox == nullptr || greeting == nullptr || count + 1 > 512 / sizeof(uint64_t) ||
        std::strcmp(greeting, kGreeting) != 0) {
      std::fprintf(stderr, "shm_peer: the parent's chunks are not as expected\n");
      return 4;
    }
    arena.deallocate(greeting);
    for (size_t i = 0; i < count; ++i) {
      auto* chunk = static_cast<unsigned char*>(arena.tryAllocate(64));
      if (chunk == nullptr) {
        std::fprintf(stderr, "shm_peer: the 64-byte pool is exhausted after %zu chunks\n", i);
        return 5;
      }
      const uint32_t index = static_cast<uint32_t>(i);
      std::memcpy(chunk, &kPeerMagic, 4);
      std::memcpy(chunk + 4, &index, 4);
      std::memset(chunk + 8, static_cast<int>((i + 1) & 0xff), 64 - 8);
      mailbox[1 + i] = arena.offsetOf(chunk);
    }
    mailbox[0] = count;
    return 0;
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "shm_peer: %s\n", e.what());
    return 3;
  }
}

}  // namespace

int main(int argc, char** argv) {
  alarm(10);  // watchdog: a peer that hangs dies of SIGALRM, and the parent's checks fail
  if (argc == 3 && std::strcmp(argv[1], "--expect-mismatch") == 0) return expectMismatch(argv[2]);
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: %s NAME MAILBOX_OFFSET PARENT_CHUNK_OFFSET COUNT\n"
                 "       %s --expect-mismatch NAME\n",
                 argv[0], argv[0]);
    return 2;
  }
  return work(argv[1], parseSize(argv[2]), parseSize(argv[3]), parseSize(argv[4]));
}
