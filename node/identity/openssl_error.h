#pragma once
// Internal to mesh_identity: OpenSSL's last error as one line of text (the queue cleared).

#include <string>

namespace mesh::identity {

std::string sslError();

}  // namespace mesh::identity
