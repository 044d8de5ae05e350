#include "tests/support/env.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace mesh::testing {

std::string meshdPath() { return MESH_TEST_MESHD; }
std::string meshcliPath() { return MESH_TEST_MESHCLI; }
std::string sourceDir() { return MESH_TEST_SOURCE_DIR; }

std::string sharedDir() {
  if (const char* env = std::getenv("MESH_SHARED_DIR"); env && *env) {
    return std::filesystem::is_directory(env) ? env : "";
  }
  auto p = std::filesystem::path(sourceDir()).parent_path() / "shared";
  return std::filesystem::is_directory(p) ? p.string() : "";
}

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (std::getenv("MESH_KEEP_TEST_DIRS")) {
    std::fprintf(stderr, "kept test dir %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LoopbackSubnet::LoopbackSubnet(int preferred) {
  const std::string dir = "/tmp/mesh-test-subnets";
  std::filesystem::create_directories(dir);
  auto lockPath = [&](int n) { return dir + "/" + std::to_string(n) + ".lock"; };
  if (preferred > 0) {
    fd_ = ::open(lockPath(preferred).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) throw std::runtime_error("cannot claim subnet");
    n_ = preferred;
    return;
  }
  // Several test processes may scan at once; flock decides. Poll until one is free.
  for (int attempt = 0; attempt < 6000; ++attempt) {
    for (int n = 10; n <= 250; ++n) {
      int fd = ::open(lockPath(n).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) continue;
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        fd_ = fd;
        n_ = n;
        return;
      }
      ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("no free loopback subnet");
}

LoopbackSubnet::~LoopbackSubnet() {
  if (fd_ >= 0) ::close(fd_);
}

std::string LoopbackSubnet::address(int i) const {
  return "127.0." + std::to_string(n_) + "." + std::to_string(i);
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(every);
  }
}

std::optional<std::string> enterPrivateNetwork() {
  if (::unshare(CLONE_NEWNET) != 0) return std::string("unshare(CLONE_NEWNET) failed (needs root): cannot cut links");
  if (std::system("ip link set lo up") != 0) return std::string("ip link set lo up failed in the new namespace");
  if (std::system("iptables -L INPUT >/dev/null 2>&1") != 0) return std::string("iptables is needed (make deps installs it)");
  return std::nullopt;
}

bool cutGossip(const std::vector<std::string>& a, const std::vector<std::string>& b, int port) {
  for (const auto& x : a) {
    for (const auto& y : b) {
      for (const char* proto : {"udp", "tcp"}) {
        for (const auto& [from, to] : {std::pair{x, y}, std::pair{y, x}}) {
          const std::string rule = "iptables -A INPUT -s " + from + " -d " + to + " -p " + proto + " --dport " +
                                   std::to_string(port) + " -j DROP";
          if (std::system(rule.c_str()) != 0) return false;
        }
      }
    }
  }
  return true;
}

bool healAll() { return std::system("iptables -F INPUT") == 0; }

}  // namespace mesh::testing
