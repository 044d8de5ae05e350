#pragma once
// MESH_CHECK stays on in release builds: a broken invariant in a network daemon is safer as a
// crash with a message than as silent corruption. Never use it on data that came from the
// network or a file; those get an Error.

namespace mesh::detail {
[[noreturn]] void checkFailed(const char* expr, const char* msg, const char* file, int line);
}

#define MESH_CHECK(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) [[unlikely]]                                          \
      ::mesh::detail::checkFailed(#cond, (msg), __FILE__, __LINE__);   \
  } while (0)

#define MESH_UNREACHABLE(msg) ::mesh::detail::checkFailed("unreachable", (msg), __FILE__, __LINE__)
