#include "local/watch_loop.h"

#include "core/types.h"

namespace petrel {

WatchLoop::WatchLoop(KubeClient& client, WatchLoopOptions options, std::function<void()> pass)
    : client_(client), options_(std::move(options)), pass_(std::move(pass)) {}

WatchLoop::~WatchLoop() { Stop(); }

void WatchLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void WatchLoop::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (watch_) watch_->Cancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WatchLoop::Run() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    pass_();
    WatchStream* watch = nullptr;
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
      if (!watch_) {
        lock.unlock();
        WatchOptions w;
        w.label_selector = options_.label_selector;
        auto opened = client_.Watch(resources::kPod, "", w);
        lock.lock();
        if (opened.ok()) watch_ = std::move(opened).value();
        if (stopping_) return;
      }
      watch = watch_.get();
      if (watch == nullptr) {
        cv_.wait_for(lock, options_.resync, [this] { return stopping_; });
        continue;
      }
    }
    WatchEvent event;
    Status s = watch->Next(&event, options_.resync);  // Stop() may Cancel() it meanwhile
    if (s.ok()) {
      // Take whatever else is already queued: one pass covers it all.
      while (watch->Next(&event, std::chrono::milliseconds(0)).ok()) {
      }
    } else if (s.code() != Code::kTimeout) {
      std::lock_guard lock(mu_);
      watch_.reset();  // ended or cancelled: reopen on the next turn
    }
  }
}

}  // namespace petrel
