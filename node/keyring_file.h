#pragma once
// The gossip keyring on disk, in serf's keyring file format: a JSON list of base64 keys, the
// primary first. Written atomically (temporary file, fsync, rename) with mode 0600, so that a
// crash never leaves a half-written keyring and a restarted node still holds rotated keys.

#include <memory>
#include <string>

#include "common/result.h"
#include "gossip/keyring.h"
#include "node/config.h"

namespace mesh::node {

// The keyring meshd starts with: the keyring file when it exists (--encrypt is then ignored,
// with a warning in `warning`), else the --encrypt key (written to the keyring file when one is
// named), else none (null: encryption off). Errors name the file or flag.
Result<std::shared_ptr<gossip::Keyring>> loadKeyring(const NodeConfig& cfg, std::string& warning);

Result<gossip::Keyring> readKeyringFile(const std::string& path);
Result<void> writeKeyringFile(const std::string& path, const gossip::Keyring& ring);

}  // namespace mesh::node
