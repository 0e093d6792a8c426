// The monitor's facts that need no postgres, read from a fake /proc and a real directory:
// the volume from statvfs, load averages, and pressure only where the kernel has it.
#include "instance/monitor.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace petrel {
namespace {

namespace fs = std::filesystem;

class FakeProc {
 public:
  FakeProc() {
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("petrel-monitor-test-" + std::to_string(rd()));
    fs::create_directories(root_);
  }
  ~FakeProc() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Write(const std::string& path, const std::string& text) {
    fs::create_directories((root_ / path).parent_path());
    std::ofstream(root_ / path) << text;
  }
  std::string root() const { return root_.string(); }

 private:
  fs::path root_;
};

TEST(GatherVmFacts, ReadsVolumeLoadAndPressure) {
  FakeProc proc;
  proc.Write("loadavg", "0.52 0.40 1.25 2/345 6789\n");
  proc.Write("pressure/cpu", "some avg10=1.00 avg60=2.50 avg300=0.10 total=5\n");
  proc.Write("pressure/memory",
             "some avg10=0.00 avg60=0.75 avg300=0.00 total=1\n"
             "full avg10=0.00 avg60=0.25 avg300=0.00 total=1\n");
  proc.Write("pressure/io", "some avg10=0.00 avg60=12.00 avg300=0.00 total=1\n");
  VmFacts vm = GatherVmFacts(proc.root(), proc.root());
  ASSERT_TRUE(vm.volume.has_value());
  EXPECT_GT(vm.volume->size_bytes, 0u);
  EXPECT_LE(vm.volume->free_bytes, vm.volume->size_bytes);
  EXPECT_LE(vm.volume->used_bytes, vm.volume->size_bytes);
  ASSERT_TRUE(vm.load.has_value());
  EXPECT_DOUBLE_EQ(vm.load->load5, 0.40);
  EXPECT_EQ(vm.pressure.cpu, 2.5);
  EXPECT_EQ(vm.pressure.memory, 0.75);
  EXPECT_EQ(vm.pressure.io, 12.0);
  EXPECT_GE(vm.cpus, 1);
}

TEST(GatherVmFacts, MissingFilesLeaveTheirFactsEmpty) {
  FakeProc proc;  // no loadavg, no pressure directory (a kernel without PSI)
  VmFacts vm = GatherVmFacts(proc.root() + "/no-such-volume", proc.root());
  EXPECT_FALSE(vm.volume.has_value());
  EXPECT_FALSE(vm.load.has_value());
  EXPECT_FALSE(vm.pressure.cpu.has_value());
  EXPECT_FALSE(vm.pressure.memory.has_value());
  EXPECT_FALSE(vm.pressure.io.has_value());
  // The vm check still says something useful, and nothing about the missing parts.
  HealthCheck c = EvaluateVmCheck(vm);
  EXPECT_EQ(c.state, CheckState::kWarning);
  EXPECT_EQ(c.output, "disk usage unknown (the data volume cannot be read)");
}

TEST(GatherVmFacts, UnparsableKernelTextIsIgnored) {
  FakeProc proc;
  proc.Write("loadavg", "garbage\n");
  proc.Write("pressure/cpu", "full avg10=0.00 avg60=1.00 avg300=0.00 total=1\n");
  VmFacts vm = GatherVmFacts(proc.root(), proc.root());
  EXPECT_FALSE(vm.load.has_value());
  EXPECT_FALSE(vm.pressure.cpu.has_value());
}

}  // namespace
}  // namespace petrel
