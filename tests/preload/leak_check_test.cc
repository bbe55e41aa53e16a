// BITSLAB_LEAK_CHECK=1: at exit, the blocks still live by size class, with counts and bytes.
// leaky_program.c has a known set of live blocks; its report is parsed and checked row by row.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

namespace {

struct Report {
  bool present = false;      // the report's first line was seen
  bool none = false;         // "no blocks still allocated"
  unsigned long total_blocks = 0, total_bytes = 0;
  std::map<std::string, unsigned long> rows;  // "small 768" -> blocks
  unsigned long row_bytes = 0;                // sum of the rows' byte column
  std::string text;
};

// Runs leaky_program MODE with the preload inherited and BITSLAB_LEAK_CHECK as given; parses
// its stderr.
Report run(const char* mode, const char* leak_check) {
  std::string command = "BITSLAB_LEAK_CHECK=";
  command += leak_check;
  command += " " LEAKY_PROGRAM " ";
  command += mode;
  command += " 2>&1";
  Report r;
  FILE* out = popen(command.c_str(), "r");
  REQUIRE(out != nullptr);
  char buf[512];
  while (fgets(buf, sizeof buf, out) != nullptr) {
    const std::string line = buf;
    r.text += line;
    if (line.find("no blocks still allocated at exit") != std::string::npos) r.present = r.none = true;
    if (sscanf(buf, "bitslab: leak check: %lu blocks (%lu bytes) still allocated", &r.total_blocks,
               &r.total_bytes) == 2)
      r.present = true;
    char kind[16];
    unsigned long class_bytes, blocks, bytes;
    if (sscanf(buf, "bitslab: %15s %lu %lu %lu", kind, &class_bytes, &blocks, &bytes) == 4) {
      CHECK(bytes == blocks * class_bytes);
      r.rows[std::string(kind) + " " + std::to_string(class_bytes)] = blocks;
      r.row_bytes += bytes;
    }
  }
  CHECK(pclose(out) == 0);
  return r;
}

unsigned long sum_rows(const Report& r) {
  unsigned long n = 0;
  for (const auto& [name, blocks] : r.rows) n += blocks;
  return n;
}

}  // namespace

TEST_CASE("leak check: a program that frees everything reports no blocks") {
  Report r = run("none", "1");
  INFO(r.text);
  CHECK(r.none);
  CHECK(r.rows.empty());
}

TEST_CASE("leak check: live blocks by class, net of cached and remote-freed blocks") {
  Report r = run("leak", "1");
  INFO(r.text);
  REQUIRE(r.present);
  CHECK(r.rows["small 768"] == 40);  // 100 - 40 freed here (block cache) - 20 by another thread
  CHECK(r.rows["pool 5120"] == 3);
  CHECK(r.total_blocks == sum_rows(r));  // the header adds up its rows
  CHECK(r.total_bytes == r.row_bytes);
  CHECK(r.text.find("blocks over 262144 bytes come from the system allocator") != std::string::npos);
}

TEST_CASE("leak check: reported even when the program closed stderr before exit") {
  Report r = run("close-stderr", "1");
  INFO(r.text);
  CHECK(r.rows["small 768"] == 40);
}

TEST_CASE("leak check: off by default and with 0, and a bad value warns once and stays off") {
  CHECK(run("leak", "0").text.empty());
  CHECK(run("leak", "").text.find("leak check") == std::string::npos);
  const Report bad = run("leak", "yes");
  CHECK(!bad.present);
  CHECK(bad.text == "bitslab: ignoring BITSLAB_LEAK_CHECK=yes (not an unsigned integer); keeping the default\n");
}
