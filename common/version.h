#pragma once
// Build identity, compiled in from CMake (project version, git commit, compiler).

namespace mesh::version {

const char* string();    // "0.1.0"
const char* commit();    // short git hash, or "unknown" outside a checkout
const char* compiler();  // e.g. "GNU 12.2.0"

}  // namespace mesh::version
