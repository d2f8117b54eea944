// The `tailor` command-line tool: a thin driver over the library. Transforming verbs build pipeline text and
// run the registered passes (transform_verbs.cpp); the others measure, report and orchestrate (verbs.cpp).
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include "cli.hpp"

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write must fail with EFBIG, which tailor reports and cleans up after,
  // instead of the default SIGXFSZ that kills the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"tailor: fit LibTorch models to the hardware they run on"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(tailor::version()));
  std::vector<std::function<int()>> actions;
  // Building the verbs reads the pass registry (flag help comes from the passes), so it may throw too.
  try {
    tailor::cli::add_measure_verbs(app, actions);
    tailor::cli::add_transform_verbs(app, actions);
    tailor::cli::add_latency_verbs(app, actions);
    tailor::cli::add_nas_verbs(app, actions);
    tailor::cli::add_place_verbs(app, actions);
    tailor::cli::add_serve_verbs(app, actions);
  } catch (const std::exception& e) {
    std::cerr << "tailor: internal error while setting up the command line: " << e.what() << "\n";
    return 1;
  }
  CLI11_PARSE(app, argc, argv);
  // Every failure ends here with one line and status 1: tailor's own errors, LibTorch's, and anything else
  // (a filesystem or JSON error) that would otherwise abort the process.
  try {
    for (const auto& action : actions)
      if (const int status = action(); status >= 0) return status;
  } catch (const tailor::Error& e) {
    std::cerr << "tailor: error: " << e.message() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "tailor: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "tailor: error: " << e.what() << "\n";
    return 1;
  } catch (...) {
    std::cerr << "tailor: error: unknown failure\n";
    return 1;
  }
  return 0;
}
