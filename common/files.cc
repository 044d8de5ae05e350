#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/errc.h"

namespace mesh::files {

Result<std::string> read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(errc::io_error, path + ": cannot read: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::string> readPrivate(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Error(errc::io_error, path + ": " + std::strerror(errno));
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return Error(errc::invalid_argument, path + ": private key readable by others (mode " + mode + "); chmod 600 it");
  }
  return read(path);
}

Result<void> createNew(const std::string& path, std::string_view text, unsigned mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return Error(errno == EEXIST ? errc::already_exists : errc::io_error, path + ": cannot create: " + std::strerror(errno));
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) return Error(errc::io_error, path + ": cannot write: " + std::strerror(saved));
  return {};
}

}  // namespace mesh::files
