#pragma once
// Internal to mesh_policy: the bound on a policy body and the checks of each kind's fields
// (document.h's validateBody, used for files and for bodies from the network alike).

#include <cstdint>

namespace mesh::policy {

// A document's body is at most 1 MiB; readers walk at most this many words of it.
inline constexpr std::size_t kMaxBodyBytes = 1 << 20;
inline constexpr std::uint64_t kMaxBodyWords = kMaxBodyBytes / 8 * 2;

}  // namespace mesh::policy
