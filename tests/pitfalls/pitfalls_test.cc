// Failures that sink preloaded allocators (shared/design/ecosystem.md, section 2), each checked
// against libbitslab.so under LD_PRELOAD. Plain checks, no framework: the program must not
// allocate before main more than the cases under test do.
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <new>
#include <pthread.h>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {
int g_failures = 0;
#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);    \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

using OwnsFn = int (*)(const void*);
OwnsFn owns() {
  static OwnsFn fn = reinterpret_cast<OwnsFn>(dlsym(RTLD_DEFAULT, "bitslab_owns"));
  return fn;
}

// --- malloc before any constructor of the program ran (ecosystem: "free(NULL) before init") ---
bool g_early_ok = false;
__attribute__((constructor(101))) void allocate_before_main() {
  free(nullptr);
  void* p = malloc(24);
  void* q = calloc(3, 8);
  void* r = realloc(nullptr, 40);
  g_early_ok = p && q && r;
  free(p);
  free(q);
  free(r);
}

void early_init() { EXPECT(g_early_ok); }

// --- dlsym and dlerror allocate (calloc for the error state): no recursion, no deadlock ---
void dlsym_does_not_recurse() {
  void* next_malloc = dlsym(RTLD_NEXT, "malloc");
  EXPECT(next_malloc != nullptr);
  EXPECT(dlsym(RTLD_DEFAULT, "no_such_symbol_in_any_library") == nullptr);
  const char* err = dlerror();
  EXPECT(err != nullptr && strstr(err, "no_such_symbol") != nullptr);
  void* libm = dlopen("libm.so.6", RTLD_NOW);
  EXPECT(libm != nullptr);
  if (libm) dlclose(libm);
}

// --- static TLS: initial-exec TLS must still let the library be dlopen()ed later ---
void dlopen_after_start(const char* library) {
  // RTLD_LOCAL: bitslab's symbols do not interpose; we only check that it loads.
  void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) fprintf(stderr, "dlopen: %s\n", dlerror());
  EXPECT(handle != nullptr);
  if (handle) {
    auto fn = reinterpret_cast<OwnsFn>(dlsym(handle, "bitslab_owns"));
    EXPECT(fn != nullptr);
    int local = 0;
    if (fn) EXPECT(fn(&local) == 0);
  }
}

// --- sized delete with a wrong size: the size is only a hint ---
void wrong_size_delete() {
  for (size_t real : {size_t{24}, size_t{200}, size_t{3000}, size_t{100000}}) {
    for (size_t claimed : {size_t{1}, real / 2, real * 3, size_t{1} << 20}) {
      char* p = static_cast<char*>(::operator new(real));
      memset(p, 0x5c, real);
      ::operator delete(p, claimed);
      // The block went back to its real class: the next allocation of that size can reuse it,
      // and a block of the claimed size is intact.
      char* q = static_cast<char*>(::operator new(real));
      memset(q, 0x3a, real);
      char* other = static_cast<char*>(::operator new(claimed));
      memset(other, 0x11, claimed);
      EXPECT(q[real - 1] == 0x3a);
      ::operator delete(other);
      ::operator delete(q);
    }
  }
}

// --- stderr closed before exit (coreutils does this): a corrupt free still aborts ---
void abort_with_stderr_closed() {
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(2);
    void* p = malloc(48);
    free(p);
    free(p);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

// --- thread exit: per-thread caches must not leak across thousands of threads ---
long rss_kib() {
  long kib = -1;
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

void* short_thread(void*) {
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(malloc(16 + (i % 50) * 20));
  for (size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);  // half here...
  void** rest = static_cast<void**>(malloc(sizeof(void*) * 1000));
  for (size_t i = 1, k = 0; i < blocks.size(); i += 2) rest[k++] = blocks[i];
  return rest;  // ...and half freed by the main thread after this one exited
}

void thread_exit_does_not_leak() {
  const long before = rss_kib();
  for (int round = 0; round < 2000; ++round) {
    pthread_t t;
    if (pthread_create(&t, nullptr, short_thread, nullptr) != 0) {
      EXPECT(false);
      return;
    }
    void* rest = nullptr;
    pthread_join(t, &rest);
    void** blocks = static_cast<void**>(rest);
    for (int i = 0; i < 1000; ++i) free(blocks[i]);
    free(blocks);
  }
  const long grown = rss_kib() - before;
  fprintf(stderr, "RSS grew by %ld KiB over 2000 threads\n", grown);
  // 2000 threads x ~300 KiB each would be ~600 MiB if nothing came back.
  EXPECT(grown < 32 * 1024);
}
}  // namespace

int main(int argc, char** argv) {
  if (owns() == nullptr) {
    fprintf(stderr, "FAIL: preload check failed: bitslab_owns not found (run under LD_PRELOAD)\n");
    return 2;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: %s /absolute/path/libbitslab.so\n", argv[0]);
    return 2;
  }
  early_init();
  dlsym_does_not_recurse();
  dlopen_after_start(argv[1]);
  wrong_size_delete();
  abort_with_stderr_closed();
  thread_exit_does_not_leak();
  if (g_failures == 0) printf("pitfalls: all passed\n");
  return g_failures == 0 ? 0 : 1;
}
