// core/thread/bootstrap.h — process and thread set-up, reached only from slow paths (L5).
//
// Nothing here may assume a constructor has run: the first malloc can come from the dynamic
// loader, from libc's own start-up, or from another library's constructor. Process state moves
// uninitialised → initialising → ready once; every thread gets a heap at its first allocation
// and gives it back from a pthread key destructor when it exits.
#pragma once
#include "core/thread/thread_heap.h"

namespace bitslab {

// Idempotent and cheap once done (one acquire load).
void process_init();
// Gives this thread a heap (process_init first). nullptr with errno = ENOMEM when there is no
// memory for one. After the thread's exit destructor ran, returns nullptr without errno: the
// caller must use a borrowed heap (borrow_heap/return_heap) instead.
ThreadHeap* thread_init();
// For allocations after this thread's heap was given back (late frees and mallocs in thread
// teardown): a heap used for one call and parked again.
ThreadHeap* borrow_heap();
void return_heap(ThreadHeap* heap);
bool thread_torn_down();

}  // namespace bitslab
