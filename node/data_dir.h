#pragma once
// The node's data directory: created when missing (its parent must exist), checked to be a writable directory, and
// locked (flock on DIR/LOCK) for the life of the process, so that two meshd processes never
// share one store.

#include <string>

#include "common/result.h"

namespace mesh::node {

class DataDir {
 public:
  // Errors name the directory and the reason in one line.
  static Result<DataDir> open(const std::string& path);

  DataDir(DataDir&& other) noexcept;
  DataDir& operator=(DataDir&& other) noexcept;
  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;
  ~DataDir();  // releases the lock

  const std::string& path() const { return path_; }

 private:
  DataDir(std::string path, int lockFd) : path_(std::move(path)), lockFd_(lockFd) {}
  std::string path_;
  int lockFd_ = -1;
};

}  // namespace mesh::node
