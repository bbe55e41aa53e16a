#include "core/profile/file_writer.h"

#include <unistd.h>
#include <cerrno>
#include <cstring>

#include "core/base/fatal.h"

namespace bitslab::profile {

FileWriter& FileWriter::bytes(const char* s, size_t n) {
  while (n > 0) {
    if (len_ == capacity_) flush();
    const size_t chunk = n < capacity_ - len_ ? n : capacity_ - len_;
    memcpy(buf_ + len_, s, chunk);
    len_ += chunk;
    s += chunk;
    n -= chunk;
  }
  return *this;
}

FileWriter& FileWriter::text(const char* s) { return bytes(s, strlen(s)); }

FileWriter& FileWriter::dec(uint64_t value) {
  char digits[24];
  return bytes(digits, format_dec(digits, sizeof digits, value));
}

FileWriter& FileWriter::hex(uint64_t value) {
  char digits[24];
  return bytes(digits, format_hex(digits, sizeof digits, value));
}

bool FileWriter::flush() {
  size_t done = 0;
  while (ok_ && done < len_) {
    const ssize_t n = write(fd_, buf_ + done, len_ - done);
    if (n > 0)
      done += static_cast<size_t>(n);
    else if (n < 0 && errno != EINTR)
      ok_ = false;
  }
  len_ = 0;
  return ok_;
}

}  // namespace bitslab::profile
