#include "gossip/lzw.h"

#include <array>
#include <cstdint>
#include <vector>

#include "gossip/errc.h"

namespace mesh::gossip::lzw {
namespace {

constexpr std::uint32_t kLitWidth = 8;
constexpr std::uint32_t kClear = 1u << kLitWidth;  // 256
constexpr std::uint32_t kEof = kClear + 1;         // 257
constexpr std::uint32_t kMaxWidth = 12;
constexpr std::uint32_t kMaxCode = (1u << kMaxWidth) - 1;  // 4095

class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  void write(std::uint32_t code, std::uint32_t width) {
    bits_ |= static_cast<std::uint64_t>(code) << nBits_;
    nBits_ += width;
    while (nBits_ >= 8) {
      out_.push_back(static_cast<char>(bits_ & 0xff));
      bits_ >>= 8;
      nBits_ -= 8;
    }
  }
  void flush() {
    if (nBits_ > 0) out_.push_back(static_cast<char>(bits_ & 0xff));
    bits_ = 0;
    nBits_ = 0;
  }

 private:
  std::string& out_;
  std::uint64_t bits_ = 0;
  std::uint32_t nBits_ = 0;
};

}  // namespace

std::string compress(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 2 + 8);
  BitWriter w(out);
  std::uint32_t width = kLitWidth + 1;
  std::uint32_t hi = kEof;
  std::uint32_t overflow = 1u << width;
  // The string table as a hash of (prefix code << 8 | next byte) -> code, open addressing, as
  // Go's writer keeps it. The exact codes chosen do not matter for compatibility (any valid code
  // stream decodes the same); the clear-when-full rule and the width changes do.
  constexpr std::uint32_t kTableSize = 4 * (1u << 12);
  constexpr std::uint32_t kTableMask = kTableSize - 1;
  std::vector<std::uint32_t> table(kTableSize, 0);  // 0 = empty; else key << 12 | code

  // Advances hi after a code is emitted; on a full table, emits clear and starts over.
  // Returns true when the table was reset.
  auto incHi = [&]() -> bool {
    ++hi;
    if (hi == overflow) {
      ++width;
      overflow <<= 1;
    }
    if (hi == kMaxCode) {
      w.write(kClear, width);
      width = kLitWidth + 1;
      hi = kEof;
      overflow = kClear << 1;
      std::fill(table.begin(), table.end(), 0);
      return true;
    }
    return false;
  };

  w.write(kClear, width);
  if (in.empty()) {
    w.write(kEof, width);
    w.flush();
    return out;
  }
  std::uint32_t code = static_cast<std::uint8_t>(in[0]);
  for (std::size_t i = 1; i < in.size(); ++i) {
    const std::uint32_t literal = static_cast<std::uint8_t>(in[i]);
    const std::uint32_t key = code << 8 | literal;
    std::uint32_t hash = ((key >> 12) ^ key) & kTableMask;
    bool found = false;
    for (std::uint32_t h = hash, t = table[h]; t != 0; h = (h + 1) & kTableMask, t = table[h]) {
      if (key == t >> 12) {
        code = t & kMaxCode;
        found = true;
        break;
      }
    }
    if (found) continue;
    w.write(code, width);
    code = literal;
    if (incHi()) continue;
    while (table[hash] != 0) hash = (hash + 1) & kTableMask;
    table[hash] = (key << 12) | hi;
  }
  w.write(code, width);
  incHi();
  w.write(kEof, width);
  w.flush();
  return out;
}

Result<std::string> decompress(std::string_view in, std::size_t maxOutput) {
  std::string out;
  std::array<std::uint8_t, 1u << kMaxWidth> suffix{};
  std::array<std::uint16_t, 1u << kMaxWidth> prefix{};
  std::array<std::uint8_t, 1u << kMaxWidth> scratch{};  // one code's expansion, built backwards
  constexpr std::uint32_t kInvalid = 0xffff;

  std::uint32_t width = kLitWidth + 1;
  std::uint32_t hi = kEof;
  std::uint32_t overflow = 1u << width;
  std::uint32_t last = kInvalid;
  std::uint64_t bits = 0;
  std::uint32_t nBits = 0;
  std::size_t pos = 0;

  for (;;) {
    while (nBits < width) {
      if (pos >= in.size()) return Error(errc::truncated, "LZW stream ends without an end code");
      bits |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in[pos++])) << nBits;
      nBits += 8;
    }
    const std::uint32_t code = static_cast<std::uint32_t>(bits & ((1u << width) - 1));
    bits >>= width;
    nBits -= width;

    if (code < kClear) {
      if (out.size() >= maxOutput) return Error(errc::too_large, "LZW output above the cap");
      out.push_back(static_cast<char>(code));
      if (last != kInvalid) {
        suffix[hi] = static_cast<std::uint8_t>(code);
        prefix[hi] = static_cast<std::uint16_t>(last);
      }
    } else if (code == kClear) {
      width = kLitWidth + 1;
      hi = kEof;
      overflow = 1u << width;
      last = kInvalid;
      continue;
    } else if (code == kEof) {
      return out;
    } else if (code <= hi) {
      std::size_t i = scratch.size();
      std::uint32_t c = code;
      if (code == hi && last != kInvalid) {
        // The KwKwK case: the code being defined right now; its last byte is its first.
        c = last;
        while (c >= kClear) c = prefix[c];
        scratch[--i] = static_cast<std::uint8_t>(c);
        c = last;
      }
      while (c >= kClear) {
        if (i == 0) return Error(errc::malformed, "LZW code chain too long");
        scratch[--i] = suffix[c];
        c = prefix[c];
      }
      if (i == 0) return Error(errc::malformed, "LZW code chain too long");
      scratch[--i] = static_cast<std::uint8_t>(c);
      const std::size_t n = scratch.size() - i;
      if (out.size() + n > maxOutput) return Error(errc::too_large, "LZW output above the cap");
      out.append(reinterpret_cast<const char*>(scratch.data() + i), n);
      if (last != kInvalid) {
        suffix[hi] = static_cast<std::uint8_t>(c);
        prefix[hi] = static_cast<std::uint16_t>(last);
      }
    } else {
      return Error(errc::malformed, "invalid LZW code");
    }
    last = code;
    ++hi;
    if (hi >= overflow) {
      if (width == kMaxWidth) {
        // A full table: no new codes until the next clear (as Go's reader, keeping hi < 4096).
        last = kInvalid;
        --hi;
      } else {
        ++width;
        overflow = 1u << width;
      }
    }
  }
}

}  // namespace mesh::gossip::lzw
