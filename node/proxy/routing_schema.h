#pragma once
// Compiling the Cap'n Proto parts Route and RateLimit documents share. Internal to
// mesh_proxy_core (it brings the schema's headers; routing.h does not).

#include "common/result.h"
#include "node/proxy/routing.h"
#include "schemas/policy.capnp.h"

namespace mesh::proxy {

// An HttpMatch (path, authority, methods, headers, query parameters) as the route phase tests it.
Result<RouteMatch> compileHttpMatch(schema::HttpMatch::Reader m);

}  // namespace mesh::proxy
