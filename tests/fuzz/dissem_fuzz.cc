// libFuzzer target: the mesh dissemination decoders (digest packets from any meshd peer, and
// the requests on its streams). What decodes re-encodes to something that decodes the same.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gossip/dissem/dissemination.h"

using namespace mesh::dissem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto d = decodeDigests(in)) {
    auto again = decodeDigests(encodeDigests(d->first, d->second));
    if (!again || again->second != d->second) std::abort();
  }
  if (auto q = decodeRequest(in)) {
    auto again = decodeRequest(encodeRequest(*q));
    if (!again || again->key != q->key || again->hash != q->hash) std::abort();
  }
  return 0;
}
