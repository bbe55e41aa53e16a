// malloc_info(): glibc's XML shape, bitslab's classes in heap 0, glibc's part in heap 1, and
// totals that agree with mallinfo2() field by field; bad arguments get -1 and EINVAL.
#include <doctest/doctest.h>

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/preload/preload.h"

namespace {

// The value of attribute `name` in the first element at or after `from` that starts with
// `element` (e.g. `<total type="rest"`); npos-safe: a missing element fails the REQUIRE.
unsigned long long attribute(const std::string& xml, size_t from, const std::string& element,
                             const std::string& name) {
  const size_t at = xml.find(element, from);
  REQUIRE_MESSAGE(at != std::string::npos, "no ", element, " in the output");
  const size_t end = xml.find("/>", at);
  const std::string key = " " + name + "=\"";
  const size_t value = xml.find(key, at);
  REQUIRE_MESSAGE((value != std::string::npos && value < end), "no ", name, " in ", element);
  return std::strtoull(xml.c_str() + value + key.size(), nullptr, 10);
}

// malloc_info's output, through a stream whose buffer is static: writing it allocates nothing,
// so mallinfo2() just before and after describes the same heap.
struct Report {
  std::string xml;
  struct mallinfo2 before, after;
};
Report report() {
  static char buffer[1 << 16];
  char path[] = "/tmp/bitslab-malloc-info-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  FILE* out = fdopen(fd, "w+");
  REQUIRE(out != nullptr);
  REQUIRE(setvbuf(out, buffer, _IOFBF, sizeof buffer) == 0);
  Report r;
  r.before = mallinfo2();
  REQUIRE(malloc_info(0, out) == 0);
  r.after = mallinfo2();
  REQUIRE(fflush(out) == 0);
  rewind(out);
  char chunk[4096];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, out)) != 0;) r.xml.append(chunk, n);
  fclose(out);
  // Well-formed XML, as a parser sees it: Python's, which scripts/setup installs.
  const std::string check =
      "python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' " + std::string(path);
  CHECK_MESSAGE(std::system(check.c_str()) == 0, "not well-formed XML:\n", r.xml);
  unlink(path);
  return r;
}

}  // namespace

TEST_CASE("malloc_info: glibc's XML, bitslab's classes, and totals that agree with mallinfo2") {
  // Small blocks, pool chunks and a block above the core's classes (glibc's), some freed.
  std::vector<void*> blocks;
  for (int i = 0; i < 3000; ++i) blocks.push_back(std::malloc(preload::opaque(size_t{16} + (i % 60) * 40)));
  for (size_t i = 0; i < blocks.size(); i += 3) std::free(blocks[i]);
  void* large = std::malloc(preload::opaque(preload::max_core_size() + 1));
  REQUIRE(large != nullptr);

  const Report r = report();
  INFO("malloc_info:\n", r.xml);
  REQUIRE(r.before.arena == r.after.arena);  // nothing changed while it ran
  REQUIRE(r.before.fordblks == r.after.fordblks);
  const struct mallinfo2& m = r.before;

  CHECK(r.xml.rfind("<malloc version=\"1\">", 0) == 0);
  const size_t heap0 = r.xml.find("<heap nr=\"0\">");
  const size_t heap1 = r.xml.find("<heap nr=\"1\">");
  const size_t totals = r.xml.rfind("</heap>");
  REQUIRE(heap0 != std::string::npos);
  REQUIRE(heap1 != std::string::npos);

  // Heap 0, bitslab's: a <size> per class with free blocks, whose counts add up to its total.
  unsigned long long size_count = 0;
  for (size_t at = r.xml.find("<size ", heap0); at < heap1; at = r.xml.find("<size ", at + 1)) {
    const unsigned long long from = attribute(r.xml, at, "<size ", "from");
    const unsigned long long to = attribute(r.xml, at, "<size ", "to");
    const unsigned long long count = attribute(r.xml, at, "<size ", "count");
    CHECK(from <= to);
    CHECK(attribute(r.xml, at, "<size ", "total") == count * to);  // free blocks of the class size
    size_count += count;
  }
  CHECK(size_count > 0);  // the blocks freed above
  CHECK(attribute(r.xml, heap0, "<total type=\"rest\"", "count") == size_count);

  // The totals after the heaps: mallinfo2's fields, which add bitslab's bytes to glibc's.
  const unsigned long long fast = attribute(r.xml, totals, "<total type=\"fast\"", "size");
  const unsigned long long rest = attribute(r.xml, totals, "<total type=\"rest\"", "size");
  CHECK(fast + rest == m.fordblks);
  CHECK(attribute(r.xml, totals, "<total type=\"mmap\"", "size") == m.hblkhd);
  CHECK(attribute(r.xml, totals, "<total type=\"mmap\"", "count") == m.hblks);
  CHECK(attribute(r.xml, totals, "<system type=\"current\"", "size") == m.arena);
  // And the heaps add up to them.
  const unsigned long long current0 = attribute(r.xml, heap0, "<system type=\"current\"", "size");
  const unsigned long long current1 = attribute(r.xml, heap1, "<system type=\"current\"", "size");
  CHECK(current0 + current1 == m.arena);
  CHECK(current0 > 0);  // bitslab's slabs and regions

  for (size_t i = 0; i < blocks.size(); ++i)
    if (i % 3 != 0) std::free(blocks[i]);  // every third is freed already
  std::free(large);
}

TEST_CASE("malloc_info: an option other than 0, or no stream, is EINVAL") {
  errno = 0;
  CHECK(malloc_info(1, stdout) == -1);
  CHECK(errno == EINVAL);
  errno = 0;
  CHECK(malloc_info(0, nullptr) == -1);
  CHECK(errno == EINVAL);
}
