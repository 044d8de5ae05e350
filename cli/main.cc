// meshcli: the operator's command line. Talks to one node's admin API (--node, or $MESH_NODE).
//
// Exit status: 0 on success; 1 when the node cannot be reached or answers with an error; 2 for
// bad flags.

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "common/http/message.h"
#include "common/version.h"

namespace {

int fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "meshcli: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mesh;
  CLI::App app{"meshcli: operate a mesh through any node's admin API", "meshcli"};
  app.get_formatter()->column_width(30);
  std::string nodeAddr = "127.0.0.1:15000";
  double timeoutSeconds = 5;
  bool showVersion = false;
  app.add_option("--node", nodeAddr, "Admin address of the node to talk to")
      ->option_text("ADDR:PORT")
      ->envname("MESH_NODE")
      ->capture_default_str();
  app.add_option("--timeout", timeoutSeconds, "Seconds to wait for the node")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_flag("--version", showVersion, "Print the version and exit");

  bool statusJson = false;
  auto* status = app.add_subcommand("status", "Show what a node says about itself");
  status->add_flag("--json", statusJson, "Print the node's JSON as it is");

  std::string eventName, eventPayload;
  bool eventCoalesce = false;
  auto* eventCmd = app.add_subcommand("event", "Send a user event to every member (serf user event)");
  eventCmd->add_option("name", eventName, "Event name")->required();
  eventCmd->add_option("payload", eventPayload, "Event payload (name and payload: at most 512 bytes)");
  eventCmd->add_flag("--coalesce", eventCoalesce, "Let receivers coalesce repeats of this event");

  bool eventsJson = false;
  auto* eventsCmd = app.add_subcommand("events", "List the recent user events a node received");
  eventsCmd->add_flag("--json", eventsJson, "Print the node's JSON as it is");

  bool membersJson = false;
  auto* membersCmd = app.add_subcommand("members", "List the gossip members a node knows, in every state");
  membersCmd->add_flag("--json", membersJson, "Print the node's JSON as it is");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    return fail(msg, 2);
  }
  if (showVersion) {
    std::printf("meshcli %s (commit %s, %s)\n", version::string(), version::commit(),
                version::compiler());
    return 0;
  }

  auto node = parseHostPort(nodeAddr, {.allowHostname = true, .requirePort = false,
                                       .defaultPort = 15000});
  if (!node) return fail("--node: " + node.error().message(), 2);
  cli::NodeClient client{*node, std::chrono::milliseconds(static_cast<long>(timeoutSeconds * 1000))};

  if (status->parsed()) {
    auto self = client.getJson("/v1/self");
    if (!self) return fail(self.error().message());
    if (statusJson) {
      std::cout << self->dump(2) << "\n";
    } else {
      std::cout << cli::formatStatus(*self);
    }
    return 0;
  }
  if (eventCmd->parsed()) {
    std::string path = "/v1/events?name=" + http::percentEncode(eventName);
    if (eventCoalesce) path += "&coalesce=true";
    auto r = client.call("POST", path, eventPayload);
    if (!r) return fail(r.error().message());
    std::cout << "Event '" << eventName << "' dispatched (Lamport time " << r->value("ltime", 0) << ")\n";
    return 0;
  }
  if (eventsCmd->parsed()) {
    auto events = client.getJson("/v1/events");
    if (!events) return fail(events.error().message());
    if (eventsJson) {
      std::cout << events->dump(2) << "\n";
    } else {
      for (const auto& e : *events) {
        std::cout << e.value("received_at", "") << "  " << e.value("ltime", 0) << "  " << e.value("name", "") << "  "
                  << e.value("payload", "") << "\n";
      }
    }
    return 0;
  }
  if (membersCmd->parsed()) {
    auto members = client.getJson("/v1/members");
    if (!members) return fail(members.error().message());
    if (membersJson) {
      std::cout << members->dump(2) << "\n";
    } else {
      std::cout << cli::formatMembers(*members);
    }
    return 0;
  }
  std::cout << app.help();
  return 2;
}
