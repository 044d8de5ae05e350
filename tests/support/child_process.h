#pragma once
// Real processes for integration tests: meshd, meshcli, Go peers. A ChildProcess is killed
// (SIGKILL) when it goes out of scope unless the test already stopped it, and gets SIGKILL from
// the kernel if the test process itself dies (PR_SET_PDEATHSIG), so no test leaves one behind.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace mesh::testing {

struct ExitStatus {
  bool exited = false;  // exited normally (else killed by a signal)
  int code = -1;        // exit code when exited
  int signal = 0;       // terminating signal otherwise
};

class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv. stdout and stderr go to files in `logDir`, named
  // `<name>.out` and `<name>.err`, so that a failing test can show them.
  static ChildProcess start(const std::vector<std::string>& argv, const std::string& logDir,
                            const std::string& name);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits for the exit up to `timeout`; nullopt if still running then.
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout);
  // SIGKILL and reap; safe to call when already stopped.
  void kill();

  std::string stdoutText() const;
  std::string stderrText() const;

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
  std::string outPath_;
  std::string errPath_;
};

// Runs a command to completion (up to `timeout`, then SIGKILL) and captures its output.
struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
  bool timedOut = false;
};
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::string& logDir);

}  // namespace mesh::testing
