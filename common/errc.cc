#include "common/errc.h"

#include <string>

namespace mesh {
namespace {

class CommonCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "mesh.common"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "ok";
      case errc::invalid_argument: return "invalid argument";
      case errc::unknown_key: return "unknown key";
      case errc::malformed: return "malformed input";
      case errc::io_error: return "I/O error";
      case errc::not_found: return "not found";
      case errc::timeout: return "timed out";
      case errc::unavailable: return "unavailable";
      case errc::already_exists: return "already exists";
      case errc::too_large: return "too large";
    }
    return "unknown error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& commonCategory() {
  static const CommonCategory category;
  return category;
}

}  // namespace mesh
