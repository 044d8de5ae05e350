#pragma once
// What the network probes (HTTP, TCP, gRPC) share: resolve, connect and everything after under
// one deadline, and one result, given once. Internal to mesh_health (.cc files only: Asio).

#include <functional>
#include <memory>
#include <string>

#include "common/asio.h"
#include "node/health/check.h"

namespace mesh::health {

// "0.3s": a timeout as the probes print it.
std::string probeSeconds(Duration d);

struct ProbeConnection {
  ProbeConnection(boost::asio::io_context& io, std::string what, Duration timeout, std::function<void(ProbeResult)> done)
      : resolver(io), socket(io), timer(io), what(std::move(what)), timeout(timeout), done(std::move(done)) {}

  boost::asio::ip::tcp::resolver resolver;
  boost::asio::ip::tcp::socket socket;
  boost::asio::steady_timer timer;
  std::string what;  // the result's prefix: "HTTP GET http://...", "TCP connect host:port", ...
  Duration timeout;
  std::function<void(ProbeResult)> done;
  bool finished = false;

  // The result, once; closes everything.
  void finish(Health h, const std::string& detail) {
    if (finished) return;
    finished = true;
    timer.cancel();
    boost::system::error_code ignored;
    socket.close(ignored);
    resolver.cancel();
    done(ProbeResult{h, what + ": " + detail});
  }

  // Arms the deadline, resolves and connects; onConnected runs once connected (not after the
  // result). owner keeps the object holding this connection alive while anything is pending.
  void connect(std::shared_ptr<void> owner, const std::string& host, const std::string& port,
               std::function<void()> onConnected) {
    timer.expires_after(timeout);
    timer.async_wait([this, owner](boost::system::error_code ec) {
      if (!ec) finish(Health::critical, "timed out after " + probeSeconds(timeout));
    });
    resolver.async_resolve(host, port, [this, owner, onConnected = std::move(onConnected)](
                                           boost::system::error_code ec, boost::asio::ip::tcp::resolver::results_type results) {
      if (finished) return;
      if (ec) return finish(Health::critical, "cannot resolve: " + ec.message());
      boost::asio::async_connect(socket, results, [this, owner, onConnected](boost::system::error_code ec2,
                                                                             const boost::asio::ip::tcp::endpoint&) {
        if (finished) return;
        if (ec2) return finish(Health::critical, ec2.message());
        onConnected();
      });
    });
  }
};

}  // namespace mesh::health
