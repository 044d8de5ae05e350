#include "node/keyring_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace mesh::node {

Result<gossip::Keyring> readKeyringFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error(errc::io_error, "keyring-file " + path + ": cannot read: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    return Error(errc::malformed, "keyring-file " + path + ": expected a JSON list of base64 keys");
  }
  if (j.empty()) return Error(errc::malformed, "keyring-file " + path + ": the list of keys is empty");
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) return Error(errc::malformed, "keyring-file " + path + ": entry " + std::to_string(i) + " is not a string");
    auto key = gossip::base64Decode(j[i].get<std::string>());
    if (!key) return Error(errc::malformed, "keyring-file " + path + ": entry " + std::to_string(i) + " is not valid base64");
    if (auto ok = gossip::Keyring::validateKey(*key); !ok) {
      return Error(errc::malformed, "keyring-file " + path + ": entry " + std::to_string(i) + ": " + ok.error().message());
    }
    keys.push_back(std::move(*key));
  }
  auto ring = gossip::Keyring::create(std::move(keys));
  if (!ring) return Error(errc::malformed, "keyring-file " + path + ": " + ring.error().message());
  return ring;
}

Result<void> writeKeyringFile(const std::string& path, const gossip::Keyring& ring) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& k : ring.keys()) j.push_back(gossip::base64Encode(k));
  const std::string body = j.dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error(errc::io_error, "keyring-file " + path + ": cannot write: " + std::strerror(errno));
  bool ok = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Error(errc::io_error, "keyring-file " + path + ": cannot write: " + std::strerror(errno));
  }
  return {};
}

Result<std::shared_ptr<gossip::Keyring>> loadKeyring(const NodeConfig& cfg, std::string& warning) {
  if (!cfg.keyringFile.empty() && std::filesystem::exists(cfg.keyringFile)) {
    auto ring = readKeyringFile(cfg.keyringFile);
    if (!ring) return ring.error();
    if (!cfg.encryptKey.empty()) {
      warning = "keyring file " + cfg.keyringFile + " exists: --encrypt is ignored (rotate keys with meshcli keys)";
    }
    return std::make_shared<gossip::Keyring>(std::move(*ring));
  }
  if (cfg.encryptKey.empty()) {
    if (!cfg.keyringFile.empty()) {
      return Error(errc::not_found, "keyring-file " + cfg.keyringFile + ": does not exist, and no --encrypt key to create it with");
    }
    return std::shared_ptr<gossip::Keyring>();
  }
  auto ring = gossip::Keyring::create({cfg.encryptKey});
  if (!ring) return Error(errc::invalid_argument, "encrypt: " + ring.error().message());
  if (!cfg.keyringFile.empty()) {
    if (auto w = writeKeyringFile(cfg.keyringFile, *ring); !w) return w.error();
  }
  return std::make_shared<gossip::Keyring>(std::move(*ring));
}

}  // namespace mesh::node
