// libFuzzer target: a peer's certificate chain as it arrives in a TLS handshake (DER), checked
// against a real root: never a crash, and never accepted (the fuzzer cannot forge a signature).
// The input is split into certificates by a 2-byte big-endian length before each.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/files.h"
#include "node/identity/identity.h"

namespace {
const std::string& roots() {
  static const std::string pem = [] {
    // A fresh directory under $TMPDIR (mkdtemp fills in the trailing six characters).
    std::string tmpl = (std::filesystem::temp_directory_path() / "identity-fuzz-").string() + std::string(6, 'X');
    char* dir = ::mkdtemp(tmpl.data());
    if (!dir) std::abort();
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (!mesh::identity::initCa("fuzz.test", std::string(dir) + "/ca", 30, now)) std::abort();
    std::string root = mesh::files::read(std::string(dir) + "/ca/ca.crt").value();
    std::filesystem::remove_all(dir);  // only the root certificate is needed, in memory
    return root;
  }();
  return pem;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> chain;
  std::size_t i = 0;
  while (i + 2 <= size && chain.size() < 10) {
    const std::size_t n = (std::size_t{data[i]} << 8) | data[i + 1];
    i += 2;
    const std::size_t take = std::min(n, size - i);
    chain.emplace_back(reinterpret_cast<const char*>(data + i), take);
    i += take;
  }
  auto r = mesh::identity::verifyPeer(chain, roots(), "fuzz.test", 1'800'000'000);
  if (r) std::abort();
  return 0;
}
