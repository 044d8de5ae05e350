// The async command runner against real /bin/sh processes: input, output, exit codes, the
// environment, the output cap, and the timeout killing the whole process group.

#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <optional>

#include "common/asio.h"

namespace mesh::subprocess {
namespace {

using namespace std::chrono_literals;

Result<Outcome> runOnce(Options o) {
  ::signal(SIGPIPE, SIG_IGN);  // as meshd does
  boost::asio::io_context io;
  std::optional<Result<Outcome>> got;
  run(io, std::move(o), [&](Result<Outcome> r) { got = std::move(r); });
  io.run();
  EXPECT_TRUE(got.has_value());
  return got ? std::move(*got) : Result<Outcome>(Error(errc::io_error, "no answer"));
}

TEST(Subprocess, InputOutputExitCodeAndEnvironment) {
  auto r = runOnce({.command = "read line; echo \"got $line from $WHO\"; echo oops >&2; exit 3",
                    .input = "hello\n",
                    .env = {{"WHO", "meshd"}}});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->exitCode, 3);
  EXPECT_EQ(r->signal, 0);
  EXPECT_FALSE(r->timedOut);
  EXPECT_EQ(r->output, "got hello from meshd\noops\n");
}

TEST(Subprocess, OutputIsCapped) {
  auto r = runOnce({.command = "head -c 100000 /dev/zero", .maxOutput = 1000});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->output.size(), 1000u);
  EXPECT_TRUE(r->truncated);
}

TEST(Subprocess, TimeoutKillsTheWholeGroup) {
  const auto t0 = std::chrono::steady_clock::now();
  // The shell's child holds the output pipe open: only killing the group ends it.
  auto r = runOnce({.command = "sleep 30 & sleep 30", .timeout = 300ms});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timedOut);
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Subprocess, ACommandThatIgnoresItsInputDoesNotHurtUs) {
  auto r = runOnce({.command = "exit 0", .input = std::string(1 << 20, 'x')});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exitCode, 0);
}

}  // namespace
}  // namespace mesh::subprocess
