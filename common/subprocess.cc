#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "common/asio.h"
#include "common/errc.h"

extern char** environ;

namespace mesh::subprocess {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// After the child closes its output we poll for its exit this often (no SIGCHLD handler: the
// process may have other children, and a handler is process-wide).
constexpr auto kReapPoll = 5ms;

struct Run : std::enable_shared_from_this<Run> {
  Run(asio::io_context& io, Options o, std::function<void(Result<Outcome>)> d)
      : options(std::move(o)), done(std::move(d)), out(io), in(io), deadline(io), reapTimer(io) {}
  // The loop went away with the command still running (meshd stopping): it does not outlive us.
  ~Run() {
    if (!finished && pid > 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  Options options;
  std::function<void(Result<Outcome>)> done;
  asio::posix::stream_descriptor out;
  asio::posix::stream_descriptor in;
  asio::steady_timer deadline;
  asio::steady_timer reapTimer;
  pid_t pid = -1;
  Outcome outcome;
  std::array<char, 4096> buf{};
  bool finished = false;

  void start() {
    auto self = shared_from_this();
    deadline.expires_after(options.timeout);
    deadline.async_wait([self](boost::system::error_code ec) {
      if (ec || self->finished) return;
      self->outcome.timedOut = true;
      ::kill(-self->pid, SIGKILL);  // the whole group: a shell's children too
    });
    if (!options.input.empty()) {
      asio::async_write(in, asio::buffer(options.input), [self](boost::system::error_code, std::size_t) {
        boost::system::error_code ignored;
        self->in.close(ignored);
      });
    } else {
      boost::system::error_code ignored;
      in.close(ignored);
    }
    readMore();
  }

  void readMore() {
    auto self = shared_from_this();
    out.async_read_some(asio::buffer(buf), [self](boost::system::error_code ec, std::size_t n) {
      if (n > 0) {
        const std::size_t room = self->options.maxOutput - std::min(self->options.maxOutput, self->outcome.output.size());
        self->outcome.output.append(self->buf.data(), std::min(n, room));
        if (n > room) self->outcome.truncated = true;
      }
      if (ec) return self->reap();
      self->readMore();
    });
  }

  void reap() {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == 0) {
      auto self = shared_from_this();
      reapTimer.expires_after(kReapPoll);
      reapTimer.async_wait([self](boost::system::error_code ec) {
        if (!ec) self->reap();
      });
      return;
    }
    finished = true;
    deadline.cancel();
    if (r == pid) {
      if (WIFEXITED(status)) outcome.exitCode = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
    }
    auto d = std::move(done);
    d(std::move(outcome));
  }
};

}  // namespace

void run(asio::io_context& io, Options options, std::function<void(Result<Outcome>)> done) {
  int inPipe[2], outPipe[2];
  if (::pipe2(inPipe, O_CLOEXEC) != 0) return done(Error(errc::io_error, std::string("pipe: ") + std::strerror(errno)));
  if (::pipe2(outPipe, O_CLOEXEC) != 0) {
    ::close(inPipe[0]), ::close(inPipe[1]);
    return done(Error(errc::io_error, std::string("pipe: ") + std::strerror(errno)));
  }
  // Environment: ours, with the extra variables replacing same-named ones.
  std::vector<std::string> envStrings;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos && options.env.contains(std::string(kv.substr(0, eq)))) continue;
    envStrings.emplace_back(kv);
  }
  for (const auto& [k, v] : options.env) envStrings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, inPipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, outPipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, outPipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so that the timeout kills what the shell started too; default
  // signal handling and mask, whatever ours are.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string sh = "/bin/sh", dashC = "-c";
  char* argv[] = {sh.data(), dashC.data(), options.command.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(inPipe[0]);
  ::close(outPipe[1]);
  if (rc != 0) {
    ::close(inPipe[1]), ::close(outPipe[0]);
    return done(Error(errc::io_error, "cannot start /bin/sh: " + std::string(std::strerror(rc))));
  }
  // A child that exits without reading its stdin must not kill us with SIGPIPE: writes go
  // through asio (send errors), and meshd ignores SIGPIPE process-wide.
  auto r = std::make_shared<Run>(io, std::move(options), std::move(done));
  r->pid = pid;
  r->out.assign(outPipe[0]);
  r->in.assign(inPipe[1]);
  r->start();
}

}  // namespace mesh::subprocess
