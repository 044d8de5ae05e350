#pragma once
// Error codes of the common module (config, addresses, files). Modules with their own failure
// modes declare their own errc and category the same way.

#include <system_error>

namespace mesh {

enum class errc {
  ok = 0,
  invalid_argument,   // a value does not parse or is out of range
  unknown_key,        // a config key or flag we do not know
  malformed,          // a document (YAML, JSON, HTTP) that does not parse
  io_error,           // reading or writing a file or socket failed
  not_found,
  timeout,
  unavailable,        // a peer could not be reached
  already_exists,
  too_large,          // input above a size cap
};

const std::error_category& commonCategory();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), commonCategory()}; }

}  // namespace mesh

template <>
struct std::is_error_code_enum<mesh::errc> : std::true_type {};
