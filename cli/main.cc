// The single `petrel` binary. Each subcommand lives with the component it runs; this file
// only wires them into CLI11.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/controller_command.h"
#include "cli/instance_command.h"
#include "cli/local_command.h"
#include "cli/plugin_command.h"
#include "cli/version.h"

int main(int argc, char** argv) {
  CLI::App app{"Petrel: a PostgreSQL operator for Kubernetes, and the same on one machine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", petrel::kVersion);

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] { std::printf("petrel %s\n", petrel::kVersion); });
  petrel::AddControllerCommand(app);
  petrel::AddInstanceCommand(app);
  petrel::AddLocalCommand(app);

  int exit_code = 0;
  petrel::AddKubectlPluginCommands(app, &exit_code);
  petrel::AddLocalPluginCommands(app, &exit_code);

  std::vector<std::string> args = petrel::PluginArguments(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& a : args) arg_ptrs.push_back(a.data());
  CLI11_PARSE(app, static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  return exit_code;
}
