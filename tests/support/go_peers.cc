#include "tests/support/go_peers.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/support/env.h"

namespace mesh::testing {
namespace {

std::string binDir() { return std::string(MESH_TEST_BINARY_DIR) + "/interop-bin"; }

bool haveGo() { return std::filesystem::exists("/usr/bin/go") || std::filesystem::exists("/usr/lib/go/bin/go"); }

// Builds with Go offline from Debian's sources, once, under a lock.
Result<std::string> goBuild(const std::string& out, const std::string& dir, const std::string& pkg) {
  std::filesystem::create_directories(binDir());
  int lock = ::open((binDir() + "/.build.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) return Error(errc::io_error, "cannot lock " + binDir());
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  if (std::filesystem::exists(out)) return out;
  const std::string cache = binDir() + "/gocache";
  auto r = run({"/usr/bin/env", "GO111MODULE=off", "GOPATH=/usr/share/gocode", "GOPROXY=off", "GOFLAGS=",
                "GOCACHE=" + cache, "HOME=" + binDir(), "/bin/sh", "-c",
                "cd '" + dir + "' && go build -o '" + out + ".tmp' " + pkg + " && mv '" + out + ".tmp' '" + out + "'"},
               std::chrono::minutes(5), binDir());
  if (r.status.code != 0) return Error(errc::io_error, "go build " + pkg + " failed: " + r.err);
  return out;
}

}  // namespace

std::string interopSkipReason() {
  if (sharedDir().empty()) {
    return "../shared is missing next to the source tree (cloned alone?): the Go peers in "
           "../shared/interop/mlpeer are needed; set MESH_SHARED_DIR to point at them";
  }
  if (!haveGo()) return "Go is not installed: run `make deps` (golang-go and the HashiCorp packages)";
  if (!std::filesystem::exists("/usr/share/gocode/src/github.com/hashicorp/memberlist")) {
    return "golang-github-hashicorp-memberlist-dev is not installed: run `make deps`";
  }
  return "";
}

Result<std::string> buildMlpeer() {
  return goBuild(binDir() + "/mlpeer", sharedDir() + "/interop/mlpeer", ".");
}

Result<std::string> buildSerf() {
  return goBuild(binDir() + "/serf", binDir(), "github.com/hashicorp/serf/cmd/serf");
}

std::string mlnodePath() { return MESH_TEST_MLNODE; }

JsonLinePeer::JsonLinePeer(std::vector<std::string> argv, const std::string& logDir, const std::string& name)
    : name_(name), proc_(ChildProcess::start(argv, logDir, name)) {}

std::vector<std::string> JsonLinePeer::lines() const {
  std::vector<std::string> out;
  std::istringstream in(proc_.stdoutText());
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '{') out.push_back(line);
  }
  return out;
}

std::vector<std::string> JsonLinePeer::events(const std::string& event, const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& l : lines()) {
    auto j = nlohmann::json::parse(l, nullptr, false);
    if (j.is_discarded() || j.value("event", "") != event) continue;
    if (!name.empty() && j.value("name", "") != name) continue;
    out.push_back(l);
  }
  return out;
}

}  // namespace mesh::testing
