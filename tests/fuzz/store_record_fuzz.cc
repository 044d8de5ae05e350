// libFuzzer target: the store's record decoders (Cap'n Proto from disk: a damaged disk must not
// crash the node). The first byte picks the record kind. Anything decoded re-encodes and decodes
// to the same value.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "store/serf_records.h"

using namespace mesh::store;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      if (auto c = decodeClocks(in); c && decodeClocks(encodeClocks(*c)).value() != *c) std::abort();
      break;
    case 1:
      if (auto m = decodeMember(in); m && decodeMember(encodeMember(*m)).value() != *m) std::abort();
      break;
    case 2:
      if (auto k = decodeKeyring(in); k && decodeKeyring(encodeKeyring(*k)).value() != *k) std::abort();
      break;
  }
  return 0;
}
