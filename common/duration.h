#pragma once
// Durations as operators write them in Go tools (memberlist, serf, Consul): "500ms", "1s",
// "1m30s", "2h", "1.5s", "250us". A bare "0" is allowed; any other number needs a unit.

#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"

namespace mesh {

Result<Duration> parseDuration(std::string_view text);
// The shortest exact form: "1.5s", "200ms", "2m0s" is written "2m".
std::string formatDuration(Duration d);

}  // namespace mesh
