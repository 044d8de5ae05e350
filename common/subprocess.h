#pragma once
// Runs a shell command without blocking the event loop: the payload goes to its stdin, its
// stdout and stderr (together) are captured up to a cap, and it is killed, with its whole
// process group, at the timeout. Used for serf-style query handlers and, later, exec health
// checks.
//
// Thread rules: call run() on the thread that runs `io`; `done` runs there too, exactly once
// (not at all if the io_context is destroyed first: the command is then killed). The process
// must ignore SIGPIPE (meshd does), or a command that exits without reading its input kills it.

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include "common/result.h"

namespace boost::asio {
class io_context;
}

namespace mesh::subprocess {

struct Options {
  std::string command;                       // run as /bin/sh -c COMMAND
  std::string input;                         // written to stdin, which is then closed
  std::map<std::string, std::string> env;    // added to (or replacing in) our environment
  std::chrono::milliseconds timeout{30'000};
  std::size_t maxOutput = 64 * 1024;         // bytes kept; the rest is read and dropped
};

struct Outcome {
  int exitCode = -1;     // when it exited
  int signal = 0;        // when it was killed by a signal (SIGKILL at the timeout)
  bool timedOut = false;
  bool truncated = false;
  std::string output;    // stdout and stderr, interleaved as written
};

// Errors: the command could not be started (no /bin/sh, out of descriptors).
void run(boost::asio::io_context& io, Options options, std::function<void(Result<Outcome>)> done);

}  // namespace mesh::subprocess
