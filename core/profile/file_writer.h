// core/profile/file_writer.h — text into a file through a fixed buffer, with write(2): no
// stdio, no malloc, usable inside malloc, at exit and from a signal handler (L3).
#pragma once
#include <cstddef>
#include <cstdint>

namespace bitslab::profile {

class FileWriter {
 public:
  // buf: the caller's storage (the profiler's static buffer, under its lock).
  FileWriter(int fd, char* buf, size_t capacity) : fd_(fd), buf_(buf), capacity_(capacity) {}
  FileWriter& text(const char* s);
  FileWriter& bytes(const char* s, size_t n);
  FileWriter& dec(uint64_t value);
  FileWriter& hex(uint64_t value);  // 0x...
  // Writes what is buffered; false if any write so far failed (errno from write).
  bool flush();

 private:
  int fd_;
  char* buf_;
  size_t capacity_;
  size_t len_ = 0;
  bool ok_ = true;
};

}  // namespace bitslab::profile
