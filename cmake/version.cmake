# Writes version.cc with the current git commit. Runs at every build (not only at configure),
# so `meshd --version` never names a stale commit; the file is rewritten only when its content
# changes, so an unchanged commit relinks nothing.
#   cmake -DSRC=... -DOUT=... -DVERSION=... -DCOMPILER=... -P version.cmake
execute_process(
  COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SRC}
  OUTPUT_VARIABLE commit
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit "unknown")
endif()
execute_process(
  COMMAND git status --porcelain --untracked-files=no
  WORKING_DIRECTORY ${SRC}
  OUTPUT_VARIABLE dirty
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(dirty)
  string(APPEND commit "-dirty")
endif()
set(content "#include \"common/version.h\"

namespace mesh::version {

const char* string() { return \"${VERSION}\"; }
const char* commit() { return \"${commit}\"; }
const char* compiler() { return \"${COMPILER}\"; }

}  // namespace mesh::version
")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${content}")
  file(WRITE ${OUT} "${content}")
endif()
