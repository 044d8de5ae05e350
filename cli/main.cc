// meshcli: the operator's command line. Talks to one node's admin API (--node, or $MESH_NODE).
//
// Exit status: 0 on success; 1 when the node cannot be reached or answers with an error; 2 for
// bad flags.

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/policy.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/errc.h"
#include "common/http/message.h"
#include "common/version.h"
#include "node/identity/identity.h"
#include "node/policy/signing.h"

using mesh::cli::fail;

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

  std::string queryName, queryPayload, queryTimeout;
  std::vector<std::string> queryNodes, queryTags;
  bool queryNoAck = false, queryJson = false;
  int queryRelay = 0;
  auto* queryCmd = app.add_subcommand(
      "query", "Ask every member (or those the filters pick) and print what comes back (serf query).\n"
               "Here --node names a member to ask; give the admin address before the subcommand or in $MESH_NODE");
  queryCmd->add_option("name", queryName, "Query name")->required();
  queryCmd->add_option("payload", queryPayload, "Query payload");
  queryCmd->add_option("--node", queryNodes, "Only this member answers (repeatable)")->option_text("NAME");
  queryCmd->add_option("--tag", queryTags, "Only members whose tag matches the regexp answer (repeatable)")
      ->option_text("KEY=REGEXP");
  queryCmd->add_option("--timeout", queryTimeout, "How long to wait for answers (default: serf's, by cluster size)")
      ->option_text("DURATION");
  queryCmd->add_option("--relay-factor", queryRelay, "Each answer is also relayed through this many members")
      ->check(CLI::Range(0, 255));
  queryCmd->add_flag("--no-ack", queryNoAck, "Do not ask members to acknowledge the query");
  queryCmd->add_flag("--json", queryJson, "Print the node's JSON as it is");

  std::string keyArg;
  bool keysJson = false;
  int keysRelay = 0;
  auto* keysCmd = app.add_subcommand("keys", "Manage the gossip encryption keys of every member (serf keys)");
  keysCmd->require_subcommand(1);
  keysCmd->add_flag("--json", keysJson, "Print the node's JSON as it is");
  keysCmd->add_option("--relay-factor", keysRelay, "Each answer is also relayed through this many members")
      ->check(CLI::Range(0, 255));
  auto* keysList = keysCmd->add_subcommand("list", "List the keys installed on members, and how many hold each");
  auto* keysInstall = keysCmd->add_subcommand("install", "Install a key on every member (not used yet)");
  keysInstall->add_option("key", keyArg, "Base64 key (16, 24 or 32 bytes)")->required();
  auto* keysUse = keysCmd->add_subcommand("use", "Make an installed key the primary on every member");
  keysUse->add_option("key", keyArg, "Base64 key")->required();
  auto* keysRemove = keysCmd->add_subcommand("remove", "Remove a key from every member");
  keysRemove->add_option("key", keyArg, "Base64 key")->required();

  std::vector<std::string> tagSet, tagDelete;
  auto* tagsCmd = app.add_subcommand("tags", "Change this node's tags at run time and re-announce them (serf tags)");
  tagsCmd->add_option("--set", tagSet, "Set a tag (repeatable)")->option_text("KEY=VALUE");
  tagsCmd->add_option("--delete", tagDelete, "Remove a tag (repeatable)")->option_text("KEY");

  std::string keygenOut;
  auto* keygenCmd = app.add_subcommand("keygen", "Make an Ed25519 key pair to sign policy: NAME.key (mode 0600) and NAME.pub");
  keygenCmd->add_option("--out", keygenOut, "Path and name of the two files, without extension")->required()->option_text("NAME");

  std::string caTrustDomain, caOut, certCa, certNode, certOut;
  int caDays = 3650, certDays = 365;
  auto* caCmd = app.add_subcommand("ca", "The mesh's root certificate authority");
  caCmd->require_subcommand(1);
  auto* caInit = caCmd->add_subcommand("init", "Make a root CA for a trust domain: DIR/ca.crt and DIR/ca.key (mode 0600)");
  caInit->add_option("--trust-domain", caTrustDomain, "SPIFFE trust domain (such as prod.example.com)")->required();
  caInit->add_option("--out", caOut, "Directory to write to (created)")->required()->option_text("DIR");
  caInit->add_option("--days", caDays, "Validity")->check(CLI::Range(1, 36500))->capture_default_str();
  auto* certCmd = app.add_subcommand("cert", "Node certificates");
  certCmd->require_subcommand(1);
  auto* certIssue = certCmd->add_subcommand(
      "issue", "Issue a node's certificate (SPIFFE ID spiffe://DOMAIN/node/NAME) and its intermediate CA, for meshd --tls-dir");
  certIssue->add_option("--ca", certCa, "The CA directory (meshcli ca init)")->required()->option_text("DIR");
  certIssue->add_option("--node", certNode, "Node name (its --node-name)")->required()->option_text("NAME");
  certIssue->add_option("--out", certOut, "Directory to write to (created)")->required()->option_text("DIR");
  certIssue->add_option("--days", certDays, "Validity (never beyond the root's)")->check(CLI::Range(1, 3650))->capture_default_str();

  bool servicesJson = false;
  auto* servicesCmd = app.add_subcommand("services", "List the services in the catalog, with their instances by health");
  servicesCmd->add_flag("--json", servicesJson, "Print the node's JSON as it is");
  std::string serviceName;
  bool serviceJson = false;
  auto* serviceCmd = app.add_subcommand("service", "List one service's instances: node, address, health, labels");
  serviceCmd->add_option("name", serviceName, "Service name")->required();
  serviceCmd->add_flag("--json", serviceJson, "Print the node's JSON as it is");

  bool membersJson = false;
  auto* membersCmd = app.add_subcommand("members", "List the gossip members a node knows, in every state");
  membersCmd->add_flag("--json", membersJson, "Print the node's JSON as it is");

  cli::PolicyCommands policyCommands(app);

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

  if (policyCommands.parsed()) return policyCommands.run(client);
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
  if (queryCmd->parsed()) {
    nlohmann::json req = {{"name", queryName}, {"payload", queryPayload}, {"ack", !queryNoAck},
                          {"relay_factor", queryRelay}};
    if (!queryNodes.empty()) req["nodes"] = queryNodes;
    nlohmann::json tags = nlohmann::json::object();
    for (const auto& t : queryTags) {
      auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0) return fail("--tag: '" + t + "' is not KEY=REGEXP", 2);
      tags[t.substr(0, eq)] = t.substr(eq + 1);
    }
    if (!tags.empty()) req["tags"] = tags;
    // The node answers when the query ends: wait for the query's time on top of ours.
    auto wait = std::chrono::minutes(5) + client.timeout;
    if (!queryTimeout.empty()) {
      auto d = parseDuration(queryTimeout);
      if (!d) return fail("--timeout: " + d.error().message(), 2);
      req["timeout"] = queryTimeout;
      wait = std::chrono::duration_cast<std::chrono::milliseconds>(*d) + client.timeout;
    }
    cli::NodeClient patient{client.node, std::chrono::duration_cast<std::chrono::milliseconds>(wait)};
    auto r = patient.call("POST", "/v1/query", req.dump());
    if (!r) return fail(r.error().message());
    if (queryJson) {
      std::cout << r->dump(2) << "\n";
    } else {
      std::cout << cli::formatQuery(*r);
    }
    return 0;
  }
  if (keygenCmd->parsed()) {
    auto key = policy::generateKey();
    if (!key) return fail(key.error().message());
    if (auto w = policy::writeKeyFiles(*key, keygenOut + ".key", keygenOut + ".pub"); !w) return fail(w.error().message());
    std::cout << "Wrote " << keygenOut << ".key (private, mode 0600: keep it offline) and " << keygenOut
              << ".pub (public: list it in the nodes' trusted keys)\nKey id: " << key->keyId << "\n";
    return 0;
  }
  if (caInit->parsed() || certIssue->parsed()) {
    const auto now = unixSeconds(SystemClock::instance().wallNow());
    auto r = caInit->parsed() ? identity::initCa(caTrustDomain, caOut, caDays, now)
                              : identity::issueNode(certCa, certNode, certOut, certDays, now);
    if (!r) return fail(r.error().message(), r.error().code == errc::invalid_argument ? 2 : 1);
    const std::time_t until = r->notAfter;
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d", std::gmtime(&until));
    if (caInit->parsed()) {
      std::cout << "Wrote " << caOut << "/ca.crt and " << caOut << "/ca.key (mode 0600: keep it offline)\nTrust domain "
                << caTrustDomain << ", valid until " << when << "\n";
    } else {
      std::cout << "Wrote " << certOut << "/node.crt, node.key, node-ca.crt, node-ca.key and ca.crt\nIdentity "
                << r->spiffeId << ", valid until " << when << "\nStart meshd with --tls-dir " << certOut << "\n";
    }
    return 0;
  }
  if (servicesCmd->parsed()) {
    auto r = client.getJson("/v1/catalog/services");
    if (!r) return fail(r.error().message());
    std::cout << (servicesJson ? r->dump(2) + "\n" : cli::formatServices(*r));
    return 0;
  }
  if (serviceCmd->parsed()) {
    auto r = client.getJson("/v1/catalog/service/" + http::percentEncode(serviceName));
    if (!r) return fail(r.error().message());
    std::cout << (serviceJson ? r->dump(2) + "\n" : cli::formatService(*r));
    return 0;
  }
  if (tagsCmd->parsed()) {
    if (tagSet.empty() && tagDelete.empty()) return fail("tags: give --set KEY=VALUE or --delete KEY", 2);
    nlohmann::json set = nlohmann::json::object();
    for (const auto& t : tagSet) {
      auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0) return fail("--set: '" + t + "' is not KEY=VALUE", 2);
      set[t.substr(0, eq)] = t.substr(eq + 1);
    }
    auto r = client.call("PUT", "/v1/tags", nlohmann::json{{"set", set}, {"delete", tagDelete}}.dump());
    if (!r) return fail(r.error().message());
    std::cout << "Successfully updated agent tags\n";
    return 0;
  }
  if (keysCmd->parsed()) {
    // Each member answers within the query timeout, which grows with the cluster: up to minutes.
    cli::NodeClient patient{client.node, std::chrono::minutes(5) + client.timeout};
    nlohmann::json body = {{"relay_factor", keysRelay}};
    Result<nlohmann::json> r = Error(errc::invalid_argument, "no keys operation");
    std::string op;
    if (keysList->parsed()) {
      op = "list";
      std::cout << "==> Asking all members for installed keys...\n";
      r = patient.call("GET", "/v1/keys", "");
    } else {
      op = keysInstall->parsed() ? "install" : keysUse->parsed() ? "use" : "remove";
      static const std::map<std::string, std::string> intro = {
          {"install", "Installing key on all members..."},
          {"use", "Changing primary key on all members..."},
          {"remove", "Removing key on all members..."}};
      std::cout << "==> " << intro.at(op) << "\n";
      body["key"] = keyArg;
      r = patient.call("POST", "/v1/keys/" + op, body.dump());
    }
    if (!r) return fail(r.error().message());
    if (keysJson) {
      std::cout << r->dump(2) << "\n";
      return r->value("error", "").empty() ? 0 : 1;
    }
    auto out = cli::formatKeys(op, *r);
    std::cout << out.out;
    std::cerr << out.err;
    return out.ok ? 0 : 1;
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
