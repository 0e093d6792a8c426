// Time as an injected dependency (Envoy's TimeSource): production code asks a Clock, tests
// drive a FakeClock. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace petrel {

using SteadyTime = std::chrono::steady_clock::time_point;
using SystemTime = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;         // for durations and deadlines
  virtual SystemTime WallNow() const = 0;     // for timestamps users read
  static Clock& Real();
};

// A clock that only moves when told. Advance() is safe from any thread.
class FakeClock : public Clock {
 public:
  SteadyTime Now() const override;
  SystemTime WallNow() const override;
  void Advance(std::chrono::nanoseconds d);

 private:
  mutable std::mutex mu_;
  SteadyTime now_{};
  SystemTime wall_{std::chrono::sys_days{std::chrono::year{2026} / 1 / 1}};
};

// RFC 3339 in UTC with second precision, as Kubernetes writes metav1.Time: 2026-11-23T22:52:59Z
std::string FormatRfc3339(SystemTime t);
// RFC 3339 with microseconds, as metav1.MicroTime (Lease renewTime): 2026-11-23T22:52:59.123456Z
std::string FormatRfc3339Micro(SystemTime t);
// Parses both forms (and a numeric offset); false when malformed.
bool ParseRfc3339(const std::string& s, SystemTime* out);

}  // namespace petrel
