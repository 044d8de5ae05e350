#pragma once
// Reading and writing one Cap'n Proto record as bytes (a store value, a pulled record), shared by
// every module that keeps records. For .cc files only: it includes capnp's headers.
//
// Reading copies the bytes into aligned words and decodes them with capnp's bounds checks under
// a traversal limit; anything that does not decode (short, misaligned, pointers out of range, too
// deep, too big) becomes an Error with the caller's code, never an exception.

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include "common/result.h"

namespace mesh::schema {

// Wall-clock time for the "written at" fields of records (for operators; never compared).
inline std::int64_t unixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string toBytes(capnp::MessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Calls f(Root::Reader) on the decoded record and returns what f returns (a Result<T>).
// `what` names the record in errors; maxWords bounds what the reader may walk.
template <typename Root, typename F>
auto readRecord(std::string_view bytes, const char* what, std::error_code bad, std::uint64_t maxWords, F&& f)
    -> decltype(f(std::declval<typename Root::Reader>())) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Error(bad, std::string(what) + " record of " + std::to_string(bytes.size()) + " bytes");
  }
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = maxWords;
    opts.nestingLimit = 16;
    capnp::FlatArrayMessageReader reader(words.asPtr(), opts);
    return f(reader.getRoot<Root>());
  } catch (const kj::Exception& e) {
    return Error(bad, std::string(what) + " record does not decode: " + e.getDescription().cStr());
  }
}

}  // namespace mesh::schema
