#include "node/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/env.h"

namespace mesh::node {
namespace {

Result<CommandLine> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "meshd");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parseCommandLine(static_cast<int>(argv.size()), argv.data());
}

std::string errorOf(const std::string& yaml) {
  NodeConfig cfg;
  auto r = applyYaml(cfg, yaml, "t.yaml");
  return r.ok() ? std::string("<ok>") : r.error().message();
}

TEST(Config, Defaults) {
  auto cl = parse({});
  ASSERT_TRUE(cl.ok()) << cl.error().message();
  const NodeConfig& c = cl->config;
  EXPECT_EQ(c.bind.toString(), "0.0.0.0:7946");
  EXPECT_EQ(c.admin.toString(), "127.0.0.1:15000");
  EXPECT_EQ(c.cluster, "default");
  EXPECT_EQ(c.role, Role::node);
  EXPECT_EQ(c.logLevel, spdlog::level::info);
  EXPECT_EQ(c.logFormat, log::Format::text);
  EXPECT_FALSE(c.nodeName.empty());  // the host name
  EXPECT_TRUE(c.join.empty());
}

TEST(Config, EveryKeyFromYaml) {
  NodeConfig c;
  auto r = applyYaml(c, R"(
node-name: web-1
bind: 127.0.1.1:7000
advertise: 10.0.0.5:7000
join: [127.0.1.2:7946, "node-3.example", "[::1]:9"]
cluster: east
data-dir: /tmp/x
admin: 127.0.1.1:0
role: edge
log-level: debug
log-format: json
)",
                     "t.yaml");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(c.nodeName, "web-1");
  EXPECT_EQ(c.bind.toString(), "127.0.1.1:7000");
  EXPECT_EQ(c.advertise->toString(), "10.0.0.5:7000");
  ASSERT_EQ(c.join.size(), 3u);
  EXPECT_EQ(c.join[1].toString(), "node-3.example:7946");
  EXPECT_EQ(c.join[2].toString(), "[::1]:9");
  EXPECT_EQ(c.cluster, "east");
  EXPECT_EQ(c.dataDir, "/tmp/x");
  EXPECT_EQ(c.admin.port, 0);
  EXPECT_EQ(c.role, Role::edge);
  EXPECT_EQ(c.logLevel, spdlog::level::debug);
  EXPECT_EQ(c.logFormat, log::Format::json);
}

TEST(Config, EveryFileKeyIsAFlag) {
  // The table drives both; a key that cannot be given as a flag would be a regression.
  for (const auto& key : configKeys()) {
    std::string value = key == "role" ? "edge"
                        : key == "log-level" ? "warn"
                        : key == "log-format" ? "json"
                        : key == "node-name" || key == "cluster" || key == "gossip-label" ? "abc"
                        : key == "data-dir" || key == "keyring-file" ? "/tmp/d"
                        : key == "encrypt" ? "YWFhYWFhYWFhYWFhYWFhYQ=="
                        : key == "gossip-profile" ? "wan"
                        : key == "zone" ? "us-east-1a"
                        : key == "tag" ? "team=payments"
                        : key == "query-handler" ? "uptime=uptime"
                        : key == "policy-threshold" || key == "workers" ? "2"
                        : key == "drain-timeout" ? "10s"
                        : key == "access-log" ? "stdout"
                        : key == "peer-protocol" ? "http2"
                        : key.starts_with("gossip-verify-") ? "false"
                        : key.rfind("gossip-", 0) == 0 && (key.find("interval") != std::string::npos ||
                                                          key.ends_with("-time") || key.ends_with("-timeout"))
                            ? "1500ms"
                        : key.rfind("gossip-", 0) == 0 ? "3"
                        : "127.0.0.9:1234";
    auto cl = parse({"--" + key, value});
    EXPECT_TRUE(cl.ok()) << key << ": " << (cl.ok() ? "" : cl.error().message());
  }
}

TEST(Config, ProxyFlags) {
  auto cl = parse({"--outbound", "127.0.0.1:0", "--inbound", "10.0.0.5:15006", "--workers", "4", "--access-log", "stderr",
                   "--drain-timeout", "30s", "--peer-protocol", "http1"});
  ASSERT_TRUE(cl.ok()) << cl.error().message();
  const auto& c = cl->config;
  EXPECT_EQ(c.outbound.toString(), "127.0.0.1:0");
  EXPECT_EQ(c.inbound.toString(), "10.0.0.5:15006");
  EXPECT_EQ(c.workers, 4);
  EXPECT_EQ(c.accessLog, "stderr");
  EXPECT_EQ(c.drainTimeout, std::chrono::seconds(30));
  EXPECT_FALSE(c.peerHttp2);
  EXPECT_TRUE(parse({})->config.peerHttp2);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--workers", "0"}, {"--workers", "x"}, {"--workers", "257"}, {"--drain-timeout", "11m"},
           {"--drain-timeout", "soon"}, {"--inbound", "nowhere"}, {"--access-log", ""}, {"--peer-protocol", "h3"}}) {
    auto r = parse(bad);
    EXPECT_FALSE(r.ok()) << bad[0] << " " << bad[1];
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find(bad[0].substr(2)), std::string::npos) << r.error().message();
    }
  }
}

TEST(Config, QueryHandlers) {
  auto cl = parse({"--query-handler", "uptime=uptime -p", "--query-handler", "*=echo hi"});
  ASSERT_TRUE(cl.ok()) << cl.error().message();
  EXPECT_EQ(cl->config.queryHandlers.at("uptime"), "uptime -p");
  EXPECT_EQ(cl->config.queryHandlers.at("*"), "echo hi");
  for (const char* bad : {"noequals", "=cmd", "name=", "_serf_ping=echo"}) {
    EXPECT_FALSE(parse({"--query-handler", bad}).ok()) << bad;
  }
}

TEST(Config, FlagsWinOverTheFile) {
  mesh::testing::TempDir dir;
  std::string file = dir.sub("c.yaml");
  std::ofstream(file) << "cluster: from-file\nrole: edge\njoin: [127.0.0.1:1, 127.0.0.1:2]\n";
  auto cl = parse({"--config", file, "--cluster", "from-flag", "--join", "127.0.0.1:3"});
  ASSERT_TRUE(cl.ok()) << cl.error().message();
  EXPECT_EQ(cl->config.cluster, "from-flag");
  EXPECT_EQ(cl->config.role, Role::edge);  // not given as a flag: the file's value stays
  ASSERT_EQ(cl->config.join.size(), 1u);   // a repeatable flag replaces the file's list
  EXPECT_EQ(cl->config.join[0].port, 3);
  EXPECT_EQ(cl->config.configFile, file);
}

TEST(Config, RepeatableJoinFlag) {
  auto cl = parse({"--join", "127.0.0.1:1", "--join", "127.0.0.1:2"});
  ASSERT_TRUE(cl.ok());
  EXPECT_EQ(cl->config.join.size(), 2u);
}

TEST(ConfigErrors, UnknownKeyNamesKeyAndLine) {
  EXPECT_EQ(errorOf("cluster: a\nbogus: 1\n"), "config file t.yaml: unknown key 'bogus' (line 2)");
}

TEST(ConfigErrors, MalformedYamlNamesLineAndColumn) {
  std::string e = errorOf("bind: [1\n");
  EXPECT_EQ(e.rfind("config file t.yaml: malformed YAML at line 2, column 1", 0), 0u) << e;
  EXPECT_EQ(errorOf("- a\n- b\n"), "config file t.yaml: the top level must be a map of keys to values (line 1)");
  EXPECT_EQ(errorOf("just a string"),
            "config file t.yaml: the top level must be a map of keys to values (line 1)");
}

TEST(ConfigErrors, BadAddressesNameTheKey) {
  EXPECT_EQ(errorOf("bind: 1.2.3:99"),
            "config file t.yaml: key 'bind' (line 1): '1.2.3:99' is not a valid address: bad IPv4 address");
  EXPECT_NE(errorOf("admin: localhost:1").find("key 'admin'"), std::string::npos);
  EXPECT_NE(errorOf("advertise: 0.0.0.0:1").find("not a specific address"), std::string::npos);
  EXPECT_NE(errorOf("join: [127.0.0.1:1, 'bad host:1']").find("key 'join'"), std::string::npos);
  EXPECT_NE(errorOf("bind: 127.0.0.1:0").find("port 0 is not allowed"), std::string::npos);
  EXPECT_NE(errorOf("bind: 127.0.0.1").find("missing ':PORT'"), std::string::npos);
}

TEST(ConfigErrors, BadValues) {
  EXPECT_NE(errorOf("role: master").find("role must be node or edge"), std::string::npos);
  EXPECT_NE(errorOf("log-level: loud").find("key 'log-level'"), std::string::npos);
  EXPECT_NE(errorOf("log-format: xml").find("key 'log-format'"), std::string::npos);
  EXPECT_NE(errorOf("node-name: 'a b'").find("not a valid node name"), std::string::npos);
  EXPECT_NE(errorOf("cluster: ''").find("not a valid cluster name"), std::string::npos);
  EXPECT_NE(errorOf("data-dir: ''").find("data dir must not be empty"), std::string::npos);
  EXPECT_NE(errorOf("cluster: [a]").find("expected a single value"), std::string::npos);
  EXPECT_NE(errorOf("cluster: {a: 1}").find("expected a single value"), std::string::npos);
  EXPECT_NE(errorOf("cluster:").find("expected a single value"), std::string::npos);
  EXPECT_NE(errorOf("join: {a: 1}").find("expected a value or a list"), std::string::npos);
  EXPECT_NE(errorOf("cluster: a\ncluster: b").find("appears twice"), std::string::npos);
  EXPECT_NE(errorOf("? [a]\n: 1").find("keys must be plain strings"), std::string::npos);
  EXPECT_EQ(errorOf(""), "<ok>");
}

TEST(ConfigErrors, FlagErrorsNameTheFlag) {
  auto a = parse({"--bind", "300.1.1.1:5"});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().message(), "flag --bind: '300.1.1.1:5' is not a valid address: bad IPv4 address");
  auto b = parse({"--bogus"});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message().find("--bogus"), std::string::npos);
  auto c = parse({"--cluster", "a", "--cluster", "b"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message(), "flag --cluster given more than once (it takes one value)");
  auto d = parse({"--role"});
  EXPECT_FALSE(d.ok());
  auto e = parse({"--config", "/nonexistent/meshd.yaml"});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message(), "config file /nonexistent/meshd.yaml: cannot read: No such file or directory");
  for (auto* r : {&a, &b, &c, &d, &e}) {
    EXPECT_EQ(r->error().message().find('\n'), std::string::npos) << "one line only";
  }
}

TEST(ConfigErrors, GossipKeys) {
  EXPECT_NE(errorOf("encrypt: notbase64!").find("key 'encrypt' (line 1): the key is not valid base64"), std::string::npos);
  EXPECT_NE(errorOf("encrypt: YWJj").find("key size must be 16, 24 or 32 bytes (got 3)"), std::string::npos);
  EXPECT_NE(errorOf("gossip-profile: moon").find("gossip profile must be lan, wan or local"), std::string::npos);
  EXPECT_NE(errorOf("gossip-probe-interval: 5").find("missing unit"), std::string::npos);
  EXPECT_NE(errorOf("gossip-probe-interval: 0s").find("must be a positive duration"), std::string::npos);
  EXPECT_NE(errorOf("gossip-probe-timeout: fast").find("is not a duration"), std::string::npos);
  EXPECT_NE(errorOf("gossip-suspicion-mult: 0").find("from 1 to 100"), std::string::npos);
  EXPECT_NE(errorOf("gossip-protocol-version: 6").find("from 1 to 5"), std::string::npos);
  EXPECT_NE(errorOf("gossip-label: " + std::string(300, 'l')).find("longer than 255"), std::string::npos);
  EXPECT_NE(errorOf("gossip-verify-incoming: maybe").find("must be true or false"), std::string::npos);
  EXPECT_EQ(errorOf("gossip-push-pull-interval: 0\ngossip-reconnect-interval: 0"), "<ok>");
  NodeConfig c;
  ASSERT_TRUE(applyYaml(c, "gossip-probe-interval: 1m30s\ngossip-nodes: 4\nencrypt: YWFhYWFhYWFhYWFhYWFhYQ==", "t").ok());
  EXPECT_EQ(*c.gossip.probeInterval, std::chrono::seconds(90));
  EXPECT_EQ(*c.gossip.gossipNodes, 4);
  EXPECT_EQ(c.encryptKey, std::string(16, 'a'));
}

TEST(Config, HelpAndVersion) {
  auto h = parse({"--help"});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->action, CommandLine::Action::help);
  for (const auto& key : configKeys()) EXPECT_NE(h->helpText.find("--" + key), std::string::npos);
  auto v = parse({"--version"});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->action, CommandLine::Action::version);
}

TEST(Config, Names) {
  EXPECT_TRUE(validName("node-1.east_a"));
  EXPECT_FALSE(validName(""));
  EXPECT_FALSE(validName(std::string(129, 'a')));
  EXPECT_FALSE(validName("a/b"));
}

TEST(Config, AdvertiseResolution) {
  NodeConfig c;
  c.bind = *parseHostPort("127.0.1.7:7946");
  EXPECT_EQ(resolveAdvertise(c)->toString(), "127.0.1.7:7946");
  c.advertise = *parseHostPort("10.9.9.9:1");
  EXPECT_EQ(resolveAdvertise(c)->toString(), "10.9.9.9:1");
  c.advertise.reset();
  c.bind = *parseHostPort("0.0.0.0:7946");
  auto any = resolveAdvertise(c);
  if (any.ok()) {  // a host with only loopback has nothing to advertise: an error says so
    EXPECT_FALSE(any->isUnspecified());
    EXPECT_NE(any->host.rfind("127.", 0), 0u);
    EXPECT_EQ(any->port, 7946);
  } else {
    EXPECT_NE(any.error().message().find("set --advertise"), std::string::npos);
  }
}

}  // namespace
}  // namespace mesh::node
