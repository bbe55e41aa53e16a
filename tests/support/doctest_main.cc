#define DOCTEST_CONFIG_IMPLEMENT
#include "tests/support/doctest_main.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <vector>

namespace bitslab::test {
namespace {

// What the run did, as doctest reports it to every listener.
struct RunRecord {
  bool ran = false;  // test_run_start: a run, not a query
  unsigned cases_started = 0;
};
RunRecord g_record;

struct CountingListener : doctest::IReporter {
  explicit CountingListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override { g_record.ran = true; }
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++g_record.cases_started; }
  void test_case_reenter(const doctest::TestCaseData&) override {}  // a subcase pass, same case
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

// The filters given, for the message: -tc=..., --test-case=... and the like.
void print_filters(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "-", 1) == 0 && std::strchr(argv[i], '=') != nullptr)
      std::fprintf(stderr, " %s", argv[i]);
}

}  // namespace

int run_doctest(int argc, char** argv) {
  bool exactly_one = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && std::strcmp(argv[i], "--exactly-one-case") == 0)
      exactly_one = true;
    else
      args.push_back(argv[i]);
  }
  doctest::Context context(static_cast<int>(args.size()), args.data());
  const int status = context.run();
  if (!g_record.ran) return status;  // a query, or doctest stopped before running
  if (g_record.cases_started == 0 || (exactly_one && g_record.cases_started != 1)) {
    std::fprintf(stderr, "doctest guard: %u test cases ran, expected %s; filters:", g_record.cases_started,
                 exactly_one ? "exactly 1" : "at least 1");
    print_filters(static_cast<int>(args.size()), args.data());
    std::fprintf(stderr, "\n(a ';' in a test name splits it into ctest entries that match nothing)\n");
    return kNoTestRan;
  }
  return status;
}

}  // namespace bitslab::test

DOCTEST_REGISTER_LISTENER("bitslab_case_counter", 0, bitslab::test::CountingListener);
