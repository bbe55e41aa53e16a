// core/base/compiler.h — compiler hints used by every layer (L0: no OS calls, no allocation).
#pragma once

#define BITSLAB_LIKELY(x) __builtin_expect(!!(x), 1)
#define BITSLAB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BITSLAB_ALWAYS_INLINE inline __attribute__((always_inline))
#define BITSLAB_NOINLINE __attribute__((noinline))
#define BITSLAB_COLD __attribute__((cold, noinline))
// On the declaration of a global the hot paths read: the compiler, told it is this library's
// own, reads it straight from its address (cmp %rdi, g(%rip)) instead of loading that address
// from the GOT first, an instruction the linker only turns into a lea.
#define BITSLAB_HIDDEN __attribute__((visibility("hidden")))
// initial-exec TLS: no __tls_get_addr, which could call malloc while we are malloc.
#define BITSLAB_TLS __attribute__((tls_model("initial-exec"))) thread_local

// Spin-wait hint: lets the sibling hyperthread run while we wait for a lock holder.
#if defined(__x86_64__) || defined(__i386__)
#define BITSLAB_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define BITSLAB_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define BITSLAB_CPU_RELAX() ((void)0)
#endif
