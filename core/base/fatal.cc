#include "core/base/fatal.h"

#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace bitslab {

size_t format_hex(char* buf, size_t cap, unsigned long value) {
  char digits[2 + 16];
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 15];
    value >>= 4;
  } while (value != 0);
  size_t len = 0;
  if (cap >= 2) { buf[len++] = '0'; buf[len++] = 'x'; }
  while (n > 0 && len < cap) buf[len++] = digits[--n];
  return len;
}

size_t format_dec(char* buf, size_t cap, unsigned long value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  size_t len = 0;
  while (n > 0 && len < cap) buf[len++] = digits[--n];
  return len;
}

namespace {
// "bitslab: " + parts + (" " + address) + "\n", built in a stack buffer and written with one
// write(2), so concurrent messages do not interleave.
void write_line(std::initializer_list<const char*> parts, const void* address, bool with_address) {
  char line[256];
  size_t len = 0;
  auto append = [&](const char* s) {
    size_t n = strlen(s);
    if (n > sizeof(line) - 1 - len) n = sizeof(line) - 1 - len;
    memcpy(line + len, s, n);
    len += n;
  };
  append("bitslab: ");
  for (const char* part : parts) append(part);
  if (with_address) {
    append(" ");
    len += format_hex(line + len, sizeof(line) - 1 - len, reinterpret_cast<unsigned long>(address));
  }
  line[len++] = '\n';
  // stderr may be closed or redirected; a failed write changes nothing for the caller.
  ssize_t ignored = write(2, line, len);
  (void)ignored;
}
}  // namespace

void warn(std::initializer_list<const char*> parts) { write_line(parts, nullptr, false); }

void fatal(const char* what, const void* address) {
  write_line({what}, address, true);
  abort();
}
void fatal(const char* what) {
  write_line({what}, nullptr, false);
  abort();
}

}  // namespace bitslab
