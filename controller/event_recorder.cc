#include "controller/event_recorder.h"

#include <atomic>
#include <random>

#include <spdlog/spdlog.h>

namespace petrel {

KubeEventRecorder::KubeEventRecorder(KubeClient& client, std::string controller_name,
                                     Clock& clock)
    : client_(client), controller_(std::move(controller_name)), clock_(clock) {}

static std::string UniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t seed = std::random_device{}();
  uint64_t v = seed ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 10; ++i) {
    out += hex[v & 0xF];
    v >>= 4;
  }
  return out;
}

void KubeEventRecorder::Record(const Json& regarding, EventType type, const std::string& reason,
                               const std::string& action, const std::string& note) {
  std::string ns = meta::Namespace(regarding);
  if (ns.empty()) ns = "default";
  std::string now = FormatRfc3339Micro(clock_.WallNow());
  Json event = {
      {"apiVersion", "events.k8s.io/v1"},
      {"kind", "Event"},
      {"metadata", {{"name", meta::Name(regarding) + "." + UniqueSuffix()}, {"namespace", ns}}},
      {"eventTime", now},
      {"reportingController", "petrel.dev/" + controller_},
      {"reportingInstance", controller_},
      {"action", action},
      {"reason", reason},
      {"note", note.substr(0, 1024)},
      {"type", type == EventType::kWarning ? "Warning" : "Normal"},
      {"regarding",
       {{"apiVersion", regarding.value("apiVersion", "")},
        {"kind", regarding.value("kind", "")},
        {"namespace", meta::Namespace(regarding)},
        {"name", meta::Name(regarding)},
        {"uid", meta::Uid(regarding)},
        {"resourceVersion", meta::ResourceVersion(regarding)}}},
  };
  auto r = client_.Create(resources::kEvent, event);
  if (!r.ok()) {
    spdlog::warn("could not record event {} on {}: {}", reason, meta::Key(regarding).ToString(),
                 r.status().ToString());
  }
}

}  // namespace petrel
