// Shared helpers for the bench/ workloads: a tiny flag parser, a monotonic
// clock, and the one-line result format.
//
// The bench programs are never linked to bitslab: allocators are compared by
// LD_PRELOAD (scripts/ab), so this header may use only the C++ standard
// library.
//
// Result format, one line per measurement on stdout, easy to grep and to split:
//   bench=<name> <key>=<value> <key>=<value> ...
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

namespace bench {

// One command-line flag: "--<name> N" or "--<name>=N", N a decimal integer.
// Each program lists only the flags it understands, so a flag that would be
// silently ignored (say --threads on a single-threaded workload) is rejected.
struct Flag {
  const char* name;    // without the leading "--"
  std::uint64_t* value;  // holds the default on entry, the parsed value on exit
  std::uint64_t min;     // smallest accepted value
  const char* help;
};

[[noreturn]] inline void usage(const char* program, const char* summary,
                               std::initializer_list<Flag> flags, int exit_code) {
  std::FILE* out = exit_code == 0 ? stdout : stderr;
  std::fprintf(out, "usage: %s [flags]\n%s\n\nflags:\n", program, summary);
  // The help texts line up after the longest flag name.
  int width = 4;  // "help"
  for (const Flag& flag : flags) {
    width = std::max(width, static_cast<int>(std::string_view(flag.name).size()));
  }
  for (const Flag& flag : flags) {
    std::fprintf(out, "  --%-*s N  %s (default %llu)\n", width, flag.name, flag.help,
                 static_cast<unsigned long long>(*flag.value));
  }
  std::fprintf(out, "  --%-*s    show this message\n", width, "help");
  std::exit(exit_code);
}

// Parses argv into the flags' values. --help prints the usage and exits 0;
// anything else that is not a listed flag with a valid value prints the usage
// and exits 2.
inline void parse_flags(int argc, char** argv, const char* summary,
                        std::initializer_list<Flag> flags) {
  const char* program = argc > 0 ? argv[0] : "bench";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(program, summary, flags, 0);
    if (!arg.starts_with("--")) {
      std::fprintf(stderr, "%s: unexpected argument '%s'\n", program, argv[i]);
      usage(program, summary, flags, 2);
    }
    arg.remove_prefix(2);

    std::string_view name = arg;
    std::string_view text;
    bool has_inline_value = false;
    if (std::size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      text = arg.substr(eq + 1);
      has_inline_value = true;
    }

    const Flag* match = nullptr;
    for (const Flag& flag : flags) {
      if (name == flag.name) match = &flag;
    }
    if (match == nullptr) {
      std::fprintf(stderr, "%s: unknown flag '%s'\n", program, argv[i]);
      usage(program, summary, flags, 2);
    }
    if (!has_inline_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: flag '--%s' needs a value\n", program, match->name);
        usage(program, summary, flags, 2);
      }
      text = argv[++i];
    }

    std::uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < match->min) {
      std::fprintf(stderr, "%s: bad value '%.*s' for '--%s' (an integer >= %llu)\n",
                   program, static_cast<int>(text.size()), text.data(), match->name,
                   static_cast<unsigned long long>(match->min));
      usage(program, summary, flags, 2);
    }
    *match->value = value;
  }
}

// Monotonic time in nanoseconds, for intervals only.
inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Builds one result line. Built and printed outside the timed regions: it
// allocates through the allocator under test.
class Result {
 public:
  explicit Result(std::string_view bench_name) : line_("bench=") { line_ += bench_name; }

  Result& add(std::string_view key, std::string_view value) {
    line_ += ' ';
    line_ += key;
    line_ += '=';
    line_ += value;
    return *this;
  }
  Result& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  Result& add(std::string_view key, std::uint64_t value) {
    return add(key, std::string_view(std::to_string(value)));
  }
  // Fixed-point with a chosen number of decimals, so columns line up and no
  // exponent notation shows up in what scripts parse.
  Result& add(std::string_view key, double value, int decimals) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
    return add(key, std::string_view(text));
  }

  // One write per line, so lines from different threads never interleave.
  void print() const {
    std::string out = line_ + '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }

 private:
  std::string line_;
};

// SplitMix64: a tiny, fast, well-mixed generator; the same seed gives the same
// sequence under every allocator, so A/B runs do identical work.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound) by multiply-shift (Lemire); the bias is below 2^-32
  // for the small bounds used here, far under anything a benchmark can see.
  std::uint32_t below(std::uint32_t bound) {
    return static_cast<std::uint32_t>(((next() >> 32) * bound) >> 32);
  }

 private:
  std::uint64_t state_;
};

// Keeps the compiler from proving a pointer unused, so a malloc/free pair it
// could otherwise elide is really executed.
inline void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Head and tail tags for a block of at least 2 * sizeof(tag) bytes. A block handed
// out twice, overlapping a neighbour, or scribbled on by allocator metadata (after a
// remote free in particular) shows as a wrong tag when it is checked.
inline void write_tags(unsigned char* block, std::uint32_t size, std::uint32_t tag) {
  std::memcpy(block, &tag, sizeof tag);
  std::memcpy(block + size - sizeof tag, &tag, sizeof tag);
}

// Aborts with a message naming the program and the block if either tag is wrong.
inline void check_tags(const char* program, const unsigned char* block, std::uint32_t size,
                       std::uint32_t tag) {
  std::uint32_t head = 0;
  std::uint32_t tail = 0;
  std::memcpy(&head, block, sizeof head);
  std::memcpy(&tail, block + size - sizeof tail, sizeof tail);
  if (head != tag || tail != tag) {
    std::fprintf(stderr,
                 "%s: heap corruption: block %p (size %u) expected tag %08x, "
                 "found head %08x tail %08x\n",
                 program, static_cast<const void*>(block), size, tag, head, tail);
    std::abort();
  }
}

// A block that links itself into a list: its header holds the next block, its size and a
// tag, and the same tag sits in its last four bytes.
struct ListedBlock {
  ListedBlock* next;
  std::uint32_t size;
  std::uint32_t tag;
};

// A new ListedBlock of `size` bytes (at least sizeof(ListedBlock) + 4): no next block, its size,
// and `tag` in its header and its last four bytes. Aborts naming the program if malloc fails.
inline ListedBlock* new_listed(const char* program, std::uint32_t size, std::uint32_t tag) {
  auto* block = static_cast<ListedBlock*>(std::malloc(size));
  if (block == nullptr) {
    std::fprintf(stderr, "%s: malloc(%u) failed\n", program, size);
    std::abort();
  }
  block->next = nullptr;
  block->size = size;
  block->tag = tag;
  std::memcpy(reinterpret_cast<unsigned char*>(block) + size - sizeof tag, &tag, sizeof tag);
  return block;
}

// Aborts naming the program and the block if its size is outside [min_size, max_size] or
// its tail tag does not match the header's.
inline void check_listed(const char* program, const ListedBlock* block, std::uint32_t min_size,
                         std::uint32_t max_size) {
  std::uint32_t tail = 0;
  std::memcpy(&tail, reinterpret_cast<const unsigned char*>(block) + block->size - sizeof tail,
              sizeof tail);
  if (block->size < min_size || block->size > max_size || tail != block->tag) {
    std::fprintf(stderr, "%s: heap corruption: block %p has size %u, tags %08x and %08x\n",
                 program, static_cast<const void*>(block), block->size, block->tag, tail);
    std::abort();
  }
}

}  // namespace bench
