#include "instance/leadership.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <future>
#include <vector>

#include "core/log.h"

namespace petrel {

LeadershipGuard::LeadershipGuard(LeaderLease& lease, LeadershipGuardOptions options)
    : lease_(lease), o_(std::move(options)) {}

LeadershipGuard::~LeadershipGuard() { Stop(); }

void LeadershipGuard::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = false;
  }
  watchdog_ = std::thread([this] { Watchdog(); });
  confirmer_ = std::thread([this] { Confirmer(); });
}

void LeadershipGuard::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (confirmer_.joinable()) confirmer_.join();
}

bool LeadershipGuard::Sleep(Millis d) {
  std::unique_lock<std::mutex> l(mu_);
  // An absolute steady deadline: after a SIGSTOP longer than `d` the wait returns at once.
  return !cv_.wait_until(l, std::chrono::steady_clock::now() + d, [this] { return stop_; });
}

void LeadershipGuard::Watchdog() {
  sched_param param = {};
  param.sched_priority = 1;
  int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
  if (rc != 0) {
    spdlog::info("lease watchdog runs at normal priority (SCHED_FIFO refused: {})",
                 std::strerror(rc));
  }
  SteadyTime last = std::chrono::steady_clock::now();
  do {
    // A stall is noted first, so that a stale grant read right after a thaw is refused.
    const SteadyTime now = std::chrono::steady_clock::now();
    const auto gap = std::chrono::duration_cast<Millis>(now - last) - o_.watchdog_tick;
    last = now;
    lease_.NoteTickGap(gap);
    const bool fenced = lease_.State() == LeaseState::kExpired && o_.fence();
    // Logged after the signal: nothing may stand between the check and the fence.
    if (gap > 4 * o_.watchdog_tick) {
      spdlog::warn("the lease watchdog did not run for {} ms (process frozen or starved)",
                   gap.count());
    }
    if (fenced) {
      spdlog::warn("{}: immediate shutdown of postgres", lease_.DescribeExpiry());
      o_.on_fenced();
    }
  } while (Sleep(o_.watchdog_tick));
}

void LeadershipGuard::Confirmer() {
  bool last_ok = true;
  do {
    auto round = lease_.BeginConfirmation();
    if (!round) continue;
    std::string why;
    bool ok = RunRound(*round, &why);
    lease_.FinishConfirmation(*round, ok);
    if (ok && !last_ok) spdlog::info("every peer confirms leadership for term {}", round->term);
    if (!ok && last_ok) {
      spdlog::warn(
          "the controller has not renewed the lease for term {} and not every peer "
          "confirms it: {}",
          round->term, why);
    }
    last_ok = ok;
  } while (Sleep(o_.confirm_tick));
}

bool LeadershipGuard::RunRound(const ConfirmationRound& round, std::string* why) {
  PeerConfirmRequest request{round.term, o_.name};
  std::vector<std::future<Result<PeerConfirmReply>>> answers;
  answers.reserve(round.peers.size());
  for (const Peer& peer : round.peers) {
    answers.push_back(std::async(std::launch::async, [this, &peer, &request, &round] {
      return o_.ask_peer(peer, request, round.call_timeout);
    }));
  }
  bool all = !round.peers.empty();
  for (size_t i = 0; i < answers.size(); ++i) {
    Result<PeerConfirmReply> a = answers[i].get();
    if (a.ok() && a->confirmed) continue;
    all = false;
    if (!why->empty()) *why += "; ";
    *why += round.peers[i].name + ": " + (a.ok() ? a->reason : a.status().message());
  }
  return all;
}

}  // namespace petrel
