// core/profile/frame_rule.h — how to step from one x86-64 frame to its caller at a given code
// address, read from the DWARF call-frame tables (.eh_frame) that every Debian binary carries,
// frame pointers or not (L3).
//
// libgcc's unwinder finds and interprets those tables anew for every frame of every stack
// (~1.5 µs for a 17-frame stack). A heap profiler walks the same few hundred call sites again
// and again, so the frame walk (core/profile/stack_trace.cc) keeps each address's rule in a
// cache and interprets the tables only on a miss. The rule is what compiled x86-64 code needs:
// the CFA (the stack pointer before the call) is rsp or rbp plus a constant, the return address
// is at CFA-8, and rbp is either untouched or saved at a constant offset from the CFA. Any
// other form (a signal frame, a CFA computed by an expression, rbp kept in another register)
// is kUnsupported, and the caller falls back to libgcc's walk for that stack.
#pragma once
#include <cstdint>

namespace bitslab::profile {

struct FrameRule {
  enum Kind : uint8_t {
    kEmpty = 0,        // no rule (a cache slot with nothing in it)
    kStep = 1,         // step to the caller as below
    kOutermost = 2,    // no caller: the address has no table entry, or its return address is
                       // undefined (_start, a thread's start): the walk ends here
    kUnsupported = 3,  // the table says something this walk does not follow: use libgcc's
  };
  Kind kind = kEmpty;
  bool cfa_from_rbp = false;  // CFA = rbp + cfa_offset, else rsp + cfa_offset
  bool rbp_saved = false;     // the caller's rbp is at CFA + rbp_offset, else rbp is unchanged
  int32_t cfa_offset = 0;
  int32_t rbp_offset = 0;

  // One 64-bit word, for the cache's single-word stores (and back): kind in bits 0-1, the two
  // flags in bits 2 and 3, rbp_offset (16 bits) from bit 16, cfa_offset (32 bits) from bit 32.
  uint64_t pack() const {
    return static_cast<uint64_t>(kind) | static_cast<uint64_t>(cfa_from_rbp) << 2 |
           static_cast<uint64_t>(rbp_saved) << 3 |
           static_cast<uint64_t>(static_cast<uint16_t>(rbp_offset)) << 16 |
           static_cast<uint64_t>(static_cast<uint32_t>(cfa_offset)) << 32;
  }
  static FrameRule unpack(uint64_t word) {
    FrameRule r;
    r.kind = static_cast<Kind>(word & 3);
    r.cfa_from_rbp = (word >> 2) & 1;
    r.rbp_saved = (word >> 3) & 1;
    r.rbp_offset = static_cast<int16_t>(static_cast<uint16_t>(word >> 16));
    r.cfa_offset = static_cast<int32_t>(static_cast<uint32_t>(word >> 32));
    return r;
  }
};

// The rule at `pc`: the address of an instruction (the walk's first frame) or a return address
// minus 1 (a call's last byte: the call may end its function). find_fde is libgcc's
// _Unwind_Find_FDE (core/profile/stack_trace.cc loads it), which finds the table entry.
using FindFdeFn = const void* (*)(void* pc, void* bases);
FrameRule read_frame_rule(uintptr_t pc, FindFdeFn find_fde);

}  // namespace bitslab::profile
