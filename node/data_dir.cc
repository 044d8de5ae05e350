#include "node/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

namespace mesh::node {
namespace {

Error fail(const std::string& path, const std::string& why) {
  // Named as the key and flag are, so the one line meshd prints points at what to fix.
  return Error(errc::io_error, "data-dir " + path + ": " + why);
}

}  // namespace

Result<DataDir> DataDir::open(const std::string& path) {
  // The directory itself is created when missing, but never its parents: a typo in a parent
  // (/var/lib/mehsd/...) must fail at start, not put the node's state somewhere unexpected.
  std::error_code ec;
  const std::filesystem::path p(path);
  if (!std::filesystem::exists(p, ec)) {
    auto norm = p.lexically_normal();
    if (!norm.has_filename()) norm = norm.parent_path();  // "dir/" names dir
    const auto parent = norm.parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      return fail(path, "parent directory " + parent.string() + " does not exist");
    }
    std::filesystem::create_directory(p, ec);
    if (ec) return fail(path, "cannot create: " + ec.message());
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail(path, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return fail(path, "not a directory");
  // access() is not enough: root passes it on a read-only file system. Creating a file is the
  // only test that holds for every user and mount.
  const std::string probe = path + "/.write-probe";
  int pfd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (pfd < 0) return fail(path, std::string("not writable: ") + std::strerror(errno));
  ::close(pfd);
  ::unlink(probe.c_str());

  const std::string lockPath = path + "/LOCK";
  int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail(path, std::string("cannot open LOCK: ") + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string owner = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "another process";
      while (!owner.empty() && (owner.back() == '\n')) owner.pop_back();
      return fail(path, "in use by another meshd (pid " + owner + ")");
    }
    return fail(path, std::string("cannot lock: ") + std::strerror(err));
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    ::close(fd);
    return fail(path, std::string("cannot write LOCK: ") + std::strerror(errno));
  }
  return DataDir(path, fd);
}

DataDir::DataDir(DataDir&& other) noexcept
    : path_(std::move(other.path_)), lockFd_(std::exchange(other.lockFd_, -1)) {}

DataDir& DataDir::operator=(DataDir&& other) noexcept {
  if (this != &other) {
    if (lockFd_ >= 0) ::close(lockFd_);
    path_ = std::move(other.path_);
    lockFd_ = std::exchange(other.lockFd_, -1);
  }
  return *this;
}

DataDir::~DataDir() {
  if (lockFd_ >= 0) ::close(lockFd_);  // closing releases the flock
}

}  // namespace mesh::node
