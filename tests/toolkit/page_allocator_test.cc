// The page_allocator seed's interface, as a user of <bitslab/toolkit.h> calls it.
#include <doctest/doctest.h>

#include "toolkit/toolkit.h"

TEST_CASE("placeholder") { CHECK(bitslab::SystemPageAllocator::instance().page_size() > 0); }
