// core/thread/thread_heap_globals.cc — the empty heap, its empty slab, and each thread's heap
// pointer, declared in thread_heap.h (L5).
//
// In a file of their own, not in thread_heap.cc: defined in the same file as free_pool, the
// "is this the empty heap" test compiles to lea + cmp instead of one cmp through the GOT, an
// instruction more on every pool free (perf.fastpath_instructions counts it).
#include "core/thread/thread_heap.h"

namespace bitslab {

constinit Slab kEmptySlab{};
constinit ThreadHeap kEmptyHeap{};
BITSLAB_TLS constinit ThreadHeap* tls_heap = &kEmptyHeap;

}  // namespace bitslab
