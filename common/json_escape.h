#pragma once
// JSON string escaping (RFC 8259 section 7) for the few places that write JSON without a JSON
// library on the hot path (log lines). Bytes that are not valid UTF-8 are replaced with U+FFFD
// so that a log line is always valid JSON, whatever a peer sent.

#include <string>
#include <string_view>

namespace mesh {

void appendJsonEscaped(std::string& out, std::string_view s);

}  // namespace mesh
