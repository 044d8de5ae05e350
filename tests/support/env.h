#pragma once
// What integration tests share: where the built binaries are, a private temporary directory per
// test, loopback subnets claimed per test so parallel tests never collide on an address, and
// polling with a deadline.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mesh::testing {

// Paths of the built programs (compiled in by CMake).
std::string meshdPath();
std::string meshcliPath();
// The source tree's root (for test data and scripts).
std::string sourceDir();
// ../shared next to the source tree, or "" when it is missing (interop tests then skip).
std::string sharedDir();

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction,
// unless MESH_KEEP_TEST_DIRS is set (then its path is printed, for post-mortems).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "mesh-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A claim on the loopback subnet 127.0.N.0/24 for the life of this object (an flock on a file in
// /tmp, so it holds across test processes). Address i of the subnet is 127.0.N.i.
class LoopbackSubnet {
 public:
  // Claims `preferred` when given (waiting for it if another test holds it), else the first free
  // subnet from 10 to 250.
  explicit LoopbackSubnet(int preferred = 0);
  ~LoopbackSubnet();
  LoopbackSubnet(const LoopbackSubnet&) = delete;
  LoopbackSubnet& operator=(const LoopbackSubnet&) = delete;
  int subnet() const { return n_; }
  std::string address(int i) const;

 private:
  int n_ = 0;
  int fd_ = -1;
};

// Calls pred every `every` until it returns true or `timeout` passes. Returns pred's last value.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds(20));

// Partition tests: moves this process (and every process it starts from then on) into a network
// namespace of its own with loopback up, so that iptables rules cut links without touching the
// machine's. Returns why not when it cannot (it needs root, and iptables).
std::optional<std::string> enterPrivateNetwork();
// Drops gossip (UDP and TCP to `port`) between every address of `a` and every one of `b`, both
// ways; healAll() removes every rule. false when iptables refused a rule.
bool cutGossip(const std::vector<std::string>& a, const std::vector<std::string>& b, int port = 7946);
bool healAll();

}  // namespace mesh::testing
