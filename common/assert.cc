#include "common/assert.h"

#include <cstdio>
#include <cstdlib>

namespace mesh::detail {

void checkFailed(const char* expr, const char* msg, const char* file, int line) {
  // stderr directly: the logger may be what is broken, and we are about to abort anyway.
  std::fprintf(stderr, "fatal: check failed: %s (%s) at %s:%d\n", expr, msg, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace mesh::detail
