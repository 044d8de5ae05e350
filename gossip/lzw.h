#pragma once
// LZW as Go's compress/lzw writes and reads it with LSB bit order and 8-bit literals (the GIF
// variant; PROTOCOL-NOTES.md section 7): codes of 9 to 12 bits, 256 = clear, 257 = end, the
// width growing when the next free code reaches 2^width, a clear first and another whenever the
// table fills. memberlist compresses with it (compress message, algorithm 0).

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mesh::gossip::lzw {

std::string compress(std::string_view in);

// Errors (gossip errc): malformed (an invalid code), truncated (no end code: Go's reader calls
// that an unexpected EOF), too_large (output would pass maxOutput: a decompression bomb).
Result<std::string> decompress(std::string_view in, std::size_t maxOutput);

}  // namespace mesh::gossip::lzw
