#pragma once
// Real HashiCorp peers for interop tests, built from Debian's Go packages (see
// ../shared/interop/mlpeer/README.md): mlpeer (a memberlist node) and the serf agent. Built once
// per build tree (an flock keeps parallel tests from building twice) into BUILD/interop-bin.

#include <string>
#include <vector>

#include "common/result.h"
#include "tests/support/child_process.h"

namespace mesh::testing {

// Why interop tests must skip, or "" when they can run: ../shared is missing (a clone of the
// project alone) or Go and the HashiCorp packages are not installed.
std::string interopSkipReason();

Result<std::string> buildMlpeer();
Result<std::string> buildSerf();
// mlnode: our mirror of mlpeer (tests/interop/mlnode.cc).
std::string mlnodePath();

// A peer that prints one JSON object a line on stdout (mlpeer, mlnode).
class JsonLinePeer {
 public:
  JsonLinePeer(std::vector<std::string> argv, const std::string& logDir, const std::string& name);
  ChildProcess& process() { return proc_; }
  // Every line printed so far that parses as JSON (as text; parse with nlohmann in the test).
  std::vector<std::string> lines() const;
  // Lines with "event" equal to `event` (and, when given, "name" equal to `name`).
  std::vector<std::string> events(const std::string& event, const std::string& name = "") const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  ChildProcess proc_;
};

}  // namespace mesh::testing
