#pragma once
// Error codes of the store module.

#include <system_error>

namespace mesh::store {

enum class errc {
  ok = 0,
  locked,        // another process has the store open
  newer_format,  // written by a newer meshd: refused, never misread
  corrupt,       // RocksDB or a record failed its checks
  io_error,      // RocksDB could not read or write
};

const std::error_category& storeCategory();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), storeCategory()}; }

}  // namespace mesh::store

template <>
struct std::is_error_code_enum<mesh::store::errc> : std::true_type {};
