#pragma once
// Base64, standard alphabet with padding (RFC 4648 section 4): serf's keys, policy signatures
// and bodies in signed policy files.

#include <string>
#include <string_view>

#include "common/result.h"

namespace mesh {

std::string base64Encode(std::string_view in);
// Refuses anything but whole, padded groups of the standard alphabet (errc::malformed).
Result<std::string> base64Decode(std::string_view in);

}  // namespace mesh
