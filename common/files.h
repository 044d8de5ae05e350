#pragma once
// Whole-file reads and writes for small files the operator keeps: keys, certificates, trust
// bundles. Errors name the path and say why.

#include <string>
#include <string_view>

#include "common/result.h"

namespace mesh::files {

Result<std::string> read(const std::string& path);
// Refuses a file that its group or others may read (a private key): "chmod 600 it".
Result<std::string> readPrivate(const std::string& path);
// Creates path with `mode`, writes text and fsyncs; refuses (errc::already_exists) to overwrite:
// a key may be the only copy there is.
Result<void> createNew(const std::string& path, std::string_view text, unsigned mode);

}  // namespace mesh::files
