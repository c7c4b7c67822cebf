// Runs the built kvstorectl binary and captures what it prints, for end-to-end tests.
#ifndef KVSTORE_TESTS_TOOLS_TOOL_RUNNER_H_
#define KVSTORE_TESTS_TOOLS_TOOL_RUNNER_H_

#include <string>
#include <vector>

namespace kvstore::testing {

struct ToolRun {
  int exit_code = -1;  // -1: did not exit normally (signal) or could not be started
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs kvstorectl with `args` (no shell), stdin from /dev/null, stdout and stderr into files (so
// neither is a terminal), and waits for it.
ToolRun RunKvstorectl(const std::vector<std::string>& args);

// The lines of `text`, without their newlines; a last line without a newline counts too.
std::vector<std::string> Lines(const std::string& text);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_TOOLS_TOOL_RUNNER_H_
