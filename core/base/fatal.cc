#include "core/base/fatal.h"

#include "core/base/compiler.h"
#include "core/base/line_writer.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

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

void LineWriter::send(int fd) {
  if (len_ == 0) return;
  // Not a cancellation point, although write(2) is: a thread with a cancel pending finishes the
  // line, and the report (malloc_stats, the exit report), as glibc's malloc_stats does; and a
  // warning printed during process_init cannot leave the process half-initialised.
  int cancel_state = 0;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  // The fd may be closed or redirected; a failed write changes nothing for the caller.
  ssize_t ignored = write(fd, buf_, len_);
  (void)ignored;
  pthread_setcancelstate(cancel_state, nullptr);
  len_ = 0;
}

namespace {
// "bitslab: " + parts + (" " + address), as one line.
void write_line(std::initializer_list<const char*> parts, const void* address, bool with_address) {
  LineWriter line;
  line.text("bitslab: ");
  for (const char* part : parts) line.text(part);
  if (with_address) line.text(" ").hex(reinterpret_cast<unsigned long>(address));
  line.flush();
}
}  // namespace

void warn(std::initializer_list<const char*> parts) { write_line(parts, nullptr, false); }

void fatal(const char* what, const void* address) {
  write_line({what}, address, true);
  abort();
}

BITSLAB_COLD void fatal_tail(const char* what, const void* address) { fatal(what, address); }
void fatal(const char* what) {
  write_line({what}, nullptr, false);
  abort();
}

}  // namespace bitslab
