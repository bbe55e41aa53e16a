// core/base/line_writer.h — one line of text built in a stack buffer and written to a file
// descriptor with one write(2) (L0). No stdio, no malloc: usable from inside malloc, from a
// signal-unsafe corner such as a failed free, and at exit after stdio is gone. One write per
// line keeps lines whole when several threads or processes share stderr.
#pragma once
#include <cstddef>
#include <cstring>

#include "core/base/fatal.h"

namespace bitslab {

class LineWriter {
 public:
  static constexpr size_t kCapacity = 256;  // longer lines are cut, never overrun

  LineWriter& text(const char* s) {
    size_t n = strlen(s);
    if (n > room()) n = room();
    memcpy(buf_ + len_, s, n);
    len_ += n;
    return *this;
  }
  // Decimal, right-aligned in `width` columns (0: no padding).
  LineWriter& dec(unsigned long value, size_t width = 0) {
    char digits[24];
    const size_t n = format_dec(digits, sizeof digits, value);
    while (width > n && room() > 0) {
      buf_[len_++] = ' ';
      --width;
    }
    return append(digits, n);
  }
  LineWriter& hex(unsigned long value) {
    char digits[24];
    return append(digits, format_hex(digits, sizeof digits, value));
  }
  // Appends "\n" and writes the line to fd; the writer is empty again afterwards.
  void flush(int fd = 2) {
    buf_[len_++] = '\n';
    send(fd);
  }
  // Writes what is there, without a newline (a long text in parts); empty afterwards.
  void send(int fd);

 private:
  size_t room() const { return kCapacity - 1 - len_; }  // 1 byte kept for the newline
  LineWriter& append(const char* s, size_t n) {
    if (n > room()) n = room();
    memcpy(buf_ + len_, s, n);
    len_ += n;
    return *this;
  }
  char buf_[kCapacity];
  size_t len_ = 0;
};

}  // namespace bitslab
