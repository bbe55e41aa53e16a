// realloc_growth: buffers that grow from nothing to megabytes.
//
// Three patterns, each repeated --iters times from an empty buffer:
//   string   std::string, one push_back per character up to --size bytes:
//            the string doubles its capacity, each time a new block, a copy
//            and a free of the old one (operator new/delete, not realloc).
//   vector   std::vector<int>, push_back up to --size bytes of ints: the same
//            growth through std::allocator.
//   realloc  C realloc, doubling from 16 B to --size: an allocator can grow
//            in place, or move, or (for large blocks) remap the pages.
// Each growth step crosses the allocator's size classes one after another, up
// into its large-block path, so every class boundary and every switch of path
// is taken, in both directions when the buffer is freed and grown again.
//
// Contents are position-dependent, not periodic at a power of two, so a copy
// that dropped or shifted part of the buffer on some step shows when the final
// buffer is checked.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench.h"

namespace {

constexpr const char* kSummary =
    "Growth from empty to --size bytes: std::string push_back (char by char),\n"
    "std::vector<int> push_back, and C realloc doubling from 16 B. Prints ms per\n"
    "repetition and ns per byte of final size for each pattern.";

// The byte at position i: every bit of i up to 2^24 changes it, so a block
// copied to a wrong offset does not look right by accident.
unsigned char byte_at(std::uint64_t i) {
  return static_cast<unsigned char>(i ^ (i >> 8) ^ (i >> 16) ^ (i >> 24));
}

// The realloc pattern writes and checks 8 bytes at a time: byte at a time, its
// own loops took 2 ns a byte, ten times what the reallocs and their page
// faults cost, and would have hidden them.
std::uint64_t word_at(std::uint64_t k) { return (k + 1) * 0x9e3779b97f4a7c15ULL; }

// [from, to) of the buffer, from a multiple of 8; a tail under 8 bytes of a
// --size that is not a multiple of 8 goes byte by byte.
void fill_words(unsigned char* buffer, std::uint64_t from, std::uint64_t to) {
  std::uint64_t i = from;
  for (; i + 8 <= to; i += 8) {
    std::uint64_t word = word_at(i / 8);
    std::memcpy(buffer + i, &word, 8);
  }
  for (; i < to; ++i) buffer[i] = byte_at(i);
}

int int_at(std::uint64_t i) {
  return static_cast<int>(static_cast<std::uint32_t>(i) * 2654435761u);
}

[[noreturn]] void corrupt(const char* pattern, std::uint64_t rep, std::uint64_t offset,
                          unsigned value, unsigned expected) {
  std::fprintf(stderr,
               "bench_realloc_growth: heap corruption: %s repetition %llu, offset %llu holds "
               "%08x, expected %08x\n",
               pattern, static_cast<unsigned long long>(rep),
               static_cast<unsigned long long>(offset), value, expected);
  std::abort();
}

void run_string(std::uint64_t bytes, std::uint64_t rep) {
  std::string text;
  for (std::uint64_t i = 0; i < bytes; ++i) text.push_back(static_cast<char>(byte_at(i)));
  bench::escape(text.data());
  for (std::uint64_t i = 0; i < bytes; ++i) {
    auto value = static_cast<unsigned char>(text[i]);
    if (value != byte_at(i)) corrupt("string", rep, i, value, byte_at(i));
  }
}

void run_vector(std::uint64_t bytes, std::uint64_t rep) {
  const std::uint64_t count = bytes / sizeof(int);
  std::vector<int> numbers;
  for (std::uint64_t i = 0; i < count; ++i) numbers.push_back(int_at(i));
  bench::escape(numbers.data());
  for (std::uint64_t i = 0; i < count; ++i) {
    if (numbers[i] != int_at(i)) {
      corrupt("vector", rep, i * sizeof(int), static_cast<unsigned>(numbers[i]),
              static_cast<unsigned>(int_at(i)));
    }
  }
}

void run_realloc(std::uint64_t bytes, std::uint64_t rep) {
  std::uint64_t size = 16;
  auto* buffer = static_cast<unsigned char*>(std::malloc(size));
  if (buffer == nullptr) {
    std::fprintf(stderr, "bench_realloc_growth: malloc(16) failed\n");
    std::abort();
  }
  fill_words(buffer, 0, size);
  while (size < bytes) {
    std::uint64_t new_size = size * 2 < bytes ? size * 2 : bytes;
    auto* grown = static_cast<unsigned char*>(std::realloc(buffer, new_size));
    if (grown == nullptr) {
      std::fprintf(stderr, "bench_realloc_growth: realloc(%llu) failed\n",
                   static_cast<unsigned long long>(new_size));
      std::abort();
    }
    buffer = grown;
    // Only the new part is written: what the old part holds is what realloc
    // kept, checked at the end.
    fill_words(buffer, size, new_size);
    size = new_size;
  }
  bench::escape(buffer);
  std::uint64_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, buffer + i, 8);
    if (word != word_at(i / 8)) {
      // The low half of the word suffices to name the offset in the message.
      corrupt("realloc", rep, i, static_cast<unsigned>(word),
              static_cast<unsigned>(word_at(i / 8)));
    }
  }
  for (; i < size; ++i) {
    if (buffer[i] != byte_at(i)) corrupt("realloc", rep, i, buffer[i], byte_at(i));
  }
  std::free(buffer);
}

void measure(const char* pattern, void (*run)(std::uint64_t, std::uint64_t), std::uint64_t bytes,
             std::uint64_t reps) {
  std::uint64_t start_ns = bench::now_ns();
  for (std::uint64_t rep = 0; rep < reps; ++rep) run(bytes, rep);
  double elapsed_ns = static_cast<double>(bench::now_ns() - start_ns);
  bench::Result("realloc_growth")
      .add("pattern", pattern)
      .add("size", bytes)
      .add("reps", reps)
      .add("seconds", elapsed_ns / 1e9, 3)
      .add("ms_per_rep", elapsed_ns / 1e6 / static_cast<double>(reps), 3)
      .add("ns_per_byte", elapsed_ns / static_cast<double>(reps) / static_cast<double>(bytes), 3)
      .print();
}

}  // namespace

int main(int argc, char** argv) {
  // 40 repetitions to 8 MiB: about 1.3 s under glibc on the 2-core dev
  // machine, nearly all of it the string pattern, whose push_back loop costs
  // 2.5-3.5 ns a character whatever the allocator. --pattern singles one out:
  // vector and realloc take 2 ms and 1 ms a repetition.
  std::uint64_t bytes = 8 << 20;
  std::uint64_t reps = 40;
  std::uint64_t pattern = 0;
  bench::parse_flags(argc, argv, kSummary,
                     {{"size", &bytes, 16, "final size in bytes"},
                      {"iters", &reps, 1, "repetitions of each pattern"},
                      {"pattern", &pattern, 0, "1: string, 2: vector, 3: realloc, 0: all three"}});
  if (pattern > 3) {
    std::fprintf(stderr, "bench_realloc_growth: --pattern is 0, 1, 2 or 3\n");
    return 2;
  }

  if (pattern == 0 || pattern == 1) measure("string", run_string, bytes, reps);
  if (pattern == 0 || pattern == 2) measure("vector", run_vector, bytes, reps);
  if (pattern == 0 || pattern == 3) measure("realloc", run_realloc, bytes, reps);
  return 0;
}
