// End-to-end tests of `kvstorectl bench` on the embedded store: every workload runs, verifies its
// end state and prints exactly one well-formed result line, last on stdout; usage errors exit 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/tools/tool_runner.h"

namespace kvstore::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Fields = std::map<std::string, std::string>;

const std::vector<std::string> kRequiredFields = {
    "workload", "keys", "seconds", "ops_per_s", "client_cpu_s", "cpu_us_per_op", "maxrss_kb"};

std::string Describe(const ToolRun& run) {
  return "exit " + std::to_string(run.exit_code) + "\nstdout:\n" + run.out + "\nstderr:\n" +
         run.err;
}

// Digits with at most one inner dot: what the result line prints for numbers.
bool IsNumber(const std::string& text) {
  size_t dot = text.find('.');
  auto digits = [](const std::string& part) {
    return !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dot == std::string::npos) return digits(text);
  return digits(text.substr(0, dot)) && digits(text.substr(dot + 1));
}

bool IsFieldName(const std::string& text) {
  return !text.empty() &&
         text.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
}

std::optional<double> Number(const Fields& fields, const std::string& name) {
  auto it = fields.find(name);
  if (it == fields.end() || !IsNumber(it->second)) return std::nullopt;
  return std::strtod(it->second.c_str(), nullptr);
}

// Checks the shape of stdout: one result line, the last; `key=value` pairs separated by single
// spaces, no key twice, every required field, numbers where numbers belong. Returns the fields.
Fields ParseResult(const ToolRun& run) {
  std::vector<std::string> lines = Lines(run.out);
  int result_lines = 0;
  for (const auto& line : lines) result_lines += line.rfind("workload=", 0) == 0 ? 1 : 0;
  EXPECT_EQ(result_lines, 1) << Describe(run);
  if (lines.empty()) {
    ADD_FAILURE() << "no output\n" << Describe(run);
    return {};
  }
  const std::string& line = lines.back();
  EXPECT_EQ(line.rfind("workload=", 0), 0u) << "the result line is not last\n" << Describe(run);
  Fields fields;
  size_t start = 0;
  while (start <= line.size()) {
    size_t end = line.find(' ', start);
    if (end == std::string::npos) end = line.size();
    std::string pair = line.substr(start, end - start);
    size_t equals = pair.find('=');
    std::string name = pair.substr(0, equals);
    std::string value = equals == std::string::npos ? "" : pair.substr(equals + 1);
    if (!IsFieldName(name) || value.empty() || value.find('=') != std::string::npos) {
      ADD_FAILURE() << "malformed pair '" << pair << "' in: " << line;
    } else {
      EXPECT_TRUE(fields.emplace(name, value).second) << "twice: " << name << " in " << line;
    }
    start = end + 1;
  }
  for (size_t i = 0; i < kRequiredFields.size(); ++i) {
    EXPECT_TRUE(fields.contains(kRequiredFields[i])) << kRequiredFields[i] << " missing: " << line;
  }
  for (const char* name :
       {"keys", "seconds", "ops_per_s", "client_cpu_s", "cpu_us_per_op", "maxrss_kb"}) {
    EXPECT_TRUE(Number(fields, name).has_value()) << name << " is not a number: " << line;
  }
  // ops_per_s is keys / seconds, the seconds being printed to the microsecond.
  auto keys = Number(fields, "keys");
  auto seconds = Number(fields, "seconds");
  auto ops = Number(fields, "ops_per_s");
  if (keys && seconds && ops) {
    EXPECT_GT(*seconds, 0) << line;
    EXPECT_GE(*ops, *keys / (*seconds + 5e-7) - 1) << line;
    if (*seconds > 5e-7) {
      EXPECT_LE(*ops, *keys / (*seconds - 5e-7) + 1) << line;
    }
  }
  EXPECT_GT(Number(fields, "maxrss_kb").value_or(0), 0) << line;
  return fields;
}

// Runs a workload that must succeed and checks its result line.
Fields RunVerified(const std::vector<std::string>& args, const std::string& workload,
                   int expected_keys) {
  ToolRun run = RunKvstorectl(args);
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  Fields fields = ParseResult(run);
  EXPECT_EQ(fields["workload"], workload);
  EXPECT_EQ(fields["keys"], std::to_string(expected_keys));
  EXPECT_EQ(fields["verified"], "true");
  EXPECT_EQ(fields["backend"], "embedded");
  // Progress is for terminals only; stderr is a file here.
  EXPECT_THAT(run.err, Not(HasSubstr("\r"))) << Describe(run);
  return fields;
}

TEST(BenchTest, RawWritesEveryKey) {
  Fields fields = RunVerified({"bench", "raw", "--keys", "200", "--concurrency", "8"}, "raw", 200);
  EXPECT_EQ(fields["concurrency"], "8");
  EXPECT_EQ(fields["value_size"], "256");
}

TEST(BenchTest, RawDefaultsToSixtyFourCallers) {
  Fields fields = RunVerified({"bench", "raw", "--keys", "100", "--quiet"}, "raw", 100);
  EXPECT_EQ(fields["concurrency"], "64");
}

TEST(BenchTest, RawAsyncWritesEveryKeyFromOneCaller) {
  // The embedded store completes each call before it returns: the caller's loop, not the stack,
  // carries the next key.
  Fields fields =
      RunVerified({"bench", "raw", "--async", "--keys", "20000", "--concurrency", "16", "--quiet"},
                  "raw", 20000);
  EXPECT_EQ(fields["async"], "1");
  EXPECT_EQ(fields["concurrency"], "16");
}

TEST(BenchTest, FillWritesEveryKey) {
  RunVerified({"bench", "fill", "--keys", "200", "--quiet"}, "fill", 200);
}

TEST(BenchTest, SyncWritesEveryKeyAndTheSyncedKey) {
  Fields fields = RunVerified({"bench", "sync", "--keys", "200", "--workers", "4"}, "sync", 200);
  EXPECT_EQ(fields["workers"], "4");
}

TEST(BenchTest, SyncDefaultsToEightWorkers) {
  Fields fields = RunVerified({"bench", "sync", "--keys", "50"}, "sync", 50);
  EXPECT_EQ(fields["workers"], "8");
}

TEST(BenchTest, WatchFillsTheEmbeddedStoreThenReceivesEveryKey) {
  Fields fields = RunVerified({"bench", "watch", "--keys", "200"}, "watch", 200);
  EXPECT_EQ(fields["page_size"], "0");
}

TEST(BenchTest, WatchAcceptsAPageSize) {
  Fields fields =
      RunVerified({"bench", "watch", "--keys", "200", "--page-size", "64"}, "watch", 200);
  EXPECT_EQ(fields["page_size"], "64");
}

TEST(BenchTest, SharedCollaboratorsConverge) {
  Fields fields = RunVerified(
      {"bench", "shared", "--collaborators", "3", "--keys-per-collaborator", "50"}, "shared", 150);
  EXPECT_EQ(fields["collaborators"], "3");
  EXPECT_EQ(fields["keys_per_collaborator"], "50");
}

TEST(BenchTest, ValuesHaveTheRequestedSize) {
  // Verification compares every value, so a success means the sizes were kept; tiny sizes
  // truncate the JSON skeleton.
  Fields large = RunVerified({"bench", "raw", "--keys", "20", "--value-size", "5000"}, "raw", 20);
  EXPECT_EQ(large["value_size"], "5000");
  RunVerified({"bench", "sync", "--keys", "20", "--value-size", "3"}, "sync", 20);
}

TEST(BenchTest, PrefixMayEndWithASlash) {
  RunVerified({"bench", "sync", "--keys", "20", "--prefix", "cilium/state/other/v2/"}, "sync", 20);
}

TEST(BenchTest, GlobalFlagsMayFollowTheWorkload) {
  RunVerified({"bench", "raw", "--keys", "10", "--log-level", "error"}, "raw", 10);
}

TEST(BenchTest, WatchOfAPrefixHoldingAnotherNumberOfKeysFails) {
  ToolRun run = RunKvstorectl({"bench", "watch", "--keys", "200", "--fill-keys", "150"});
  EXPECT_NE(run.exit_code, 0) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("holds 150 keys but --keys is 200")) << Describe(run);
  Fields fields = ParseResult(run);
  EXPECT_EQ(fields["verified"], "false");
}

TEST(BenchTest, UnknownFlagIsAUsageError) {
  ToolRun run = RunKvstorectl({"bench", "raw", "--no-such-flag"});
  EXPECT_EQ(run.exit_code, 2) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("--no-such-flag")) << Describe(run);
  EXPECT_EQ(run.out, "");
}

TEST(BenchTest, FlagOfAnotherWorkloadIsAUsageError) {
  ToolRun run = RunKvstorectl({"bench", "sync", "--concurrency", "3"});
  EXPECT_EQ(run.exit_code, 2) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("--concurrency")) << Describe(run);
}

TEST(BenchTest, OutOfRangeValuesAreUsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"bench", "raw", "--keys", "0"},
           {"bench", "raw", "--keys", "many"},
           {"bench", "raw", "--concurrency", "0"},
           {"bench", "sync", "--workers", "0"},
           {"bench", "fill", "--value-size", "0"},
           {"bench", "shared", "--collaborators", "0"},
           {"bench", "watch", "--page-size", "-1"},
           {"bench", "raw", "--timeout", "0"},
       }) {
    ToolRun run = RunKvstorectl(args);
    EXPECT_EQ(run.exit_code, 2) << args[1] << " " << args[2] << " " << args[3] << "\n"
                                << Describe(run);
    EXPECT_THAT(run.err, HasSubstr(args[2])) << Describe(run);
    EXPECT_EQ(run.out, "");
  }
}

TEST(BenchTest, EmptyPrefixIsAUsageError) {
  ToolRun run = RunKvstorectl({"bench", "raw", "--keys", "5", "--prefix", "/"});
  EXPECT_EQ(run.exit_code, 2) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("--prefix")) << Describe(run);
}

TEST(BenchTest, UnknownOrMissingWorkloadIsAUsageError) {
  EXPECT_EQ(RunKvstorectl({"bench", "nosuchworkload"}).exit_code, 2);
  EXPECT_EQ(RunKvstorectl({"bench"}).exit_code, 2);
}

TEST(BenchTest, SharedTakesItsSizeFromCollaboratorsAndKeysEach) {
  ToolRun run = RunKvstorectl({"bench", "shared", "--keys", "10"});
  EXPECT_EQ(run.exit_code, 2) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("--keys")) << Describe(run);
}

TEST(BenchTest, HelpOfWatchExplainsTheEmbeddedFill) {
  ToolRun run = RunKvstorectl({"bench", "watch", "--help"});
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_THAT(run.out, HasSubstr("embedded store keeps nothing between runs"));
  EXPECT_THAT(run.out, HasSubstr("--fill-keys"));
}

TEST(BenchTest, UnreachableEtcdIsAFailureWithAMessage) {
  // Port 1 on loopback refuses connections; --timeout bounds the wait.
  ToolRun run = RunKvstorectl(
      {"--endpoints", "127.0.0.1:1", "bench", "raw", "--keys", "5", "--timeout", "2"});
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  EXPECT_THAT(run.err, HasSubstr("error: bench raw:")) << Describe(run);
  EXPECT_EQ(run.out, "");
}

}  // namespace
}  // namespace kvstore::testing
