#pragma once
// The bound on a policy body, for mesh_policy (whose document.h checks each kind's fields, for
// files and bodies from the network alike) and for the proxy, which reads the bodies in force.

#include <cstdint>

namespace mesh::policy {

// A document's body is at most 1 MiB; readers walk at most this many words of it.
inline constexpr std::size_t kMaxBodyBytes = 1 << 20;
inline constexpr std::uint64_t kMaxBodyWords = kMaxBodyBytes / 8 * 2;

}  // namespace mesh::policy
