#include "instance/manager.h"

#include "core/log.h"
#include "instance/files.h"

namespace petrel {
namespace {

const char* PhaseOf(ActionKind kind, bool fenced) {
  switch (kind) {
    case ActionKind::kNone:
      return fenced ? "fenced" : "running";
    case ActionKind::kWait:
      return "waiting";
    case ActionKind::kInitdb:
      return "initdb";
    case ActionKind::kClone:
      return "cloning";
    case ActionKind::kWriteConfig:
      return "configuring";
    case ActionKind::kStart:
      return "starting";
    case ActionKind::kStop:
      return fenced ? "fencing" : "stopping";
    case ActionKind::kFence:
      return "fencing";
    case ActionKind::kPromote:
      return "promoting";
    case ActionKind::kRewind:
      return "rewinding";
    case ActionKind::kReclone:
      return "recloning";
    case ActionKind::kSyncSlots:
      return "configuring";
    case ActionKind::kCheckpoint:
      return "checkpointing";
    case ActionKind::kRestore:
      return "restoring";
    case ActionKind::kRekey:
      return "re-keying";
    case ActionKind::kRecordUid:
      return "configuring";
    case ActionKind::kRefuse:
      return "refused";
  }
  return "unknown";
}

}  // namespace

InstanceManager::InstanceManager(ManagerOptions options, Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      node_(options_.node, &stop_, clock),
      snapshots_(node_.SnapshotSourceInfo()),
      lease_(clock),
      guard_(lease_, LeadershipGuardOptions{
                         options_.node.name, options_.watchdog_tick, Millis(10),
                         [this] { return node_.FenceImmediately(); }, [this] { Wake(); },
                         options_.ask_peer ? options_.ask_peer
                                           : AskPeerFn([](const Peer&, const PeerConfirmRequest&,
                                                          Millis) -> Result<PeerConfirmReply> {
                                               return UnavailableError("peers are not asked");
                                             })}) {
  status_.name = options_.node.name;
  status_.phase = "starting";
}

InstanceManager::~InstanceManager() { Stop(); }

Status InstanceManager::Start() {
  PETREL_RETURN_IF_ERROR(node_.Prepare());
  PETREL_ASSIGN_OR_RETURN(auto saved, ReadFileIfExists(node_.spec_path()));
  if (saved) {
    Json j = Json::parse(*saved, nullptr, /*allow_exceptions=*/false);
    auto spec = InstanceSpec::FromJson(j);
    if (spec.ok()) {
      spdlog::info("resuming with the saved spec (generation {})", spec->generation);
      std::lock_guard<std::mutex> l(mu_);
      spec_ = *spec;
      lease_.SetSpec(spec_);  // a restarted primary holds no lease until one is granted
    } else {
      // Not fatal: the controller sends the whole spec again.
      spdlog::warn("ignoring the unreadable saved spec {}: {}", node_.spec_path(),
                   spec.status().message());
    }
  }
  guard_.Start();
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void InstanceManager::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    woken_ = true;
  }
  wake_.notify_all();
  thread_.join();
  guard_.Stop();  // after the loop: the watchdog guards postgres until it is down
}

void InstanceManager::Wake() {
  std::lock_guard<std::mutex> l(mu_);
  woken_ = true;
  wake_.notify_all();
}

Status InstanceManager::AcceptSpec(const InstanceSpec& spec) {
  std::lock_guard<std::mutex> l(mu_);
  PETREL_RETURN_IF_ERROR(CheckSpecTransition(spec_, node_.HasData(), spec));
  if (Status st = CheckDataIdentity(node_.DataClusterUid(), spec); !st.ok()) {
    refusal_ = st.message();
    ShowRefusal(&status_);
    return st;
  }
  refusal_.clear();
  if (spec_ && *spec_ == spec) return Status::Ok();  // idempotent re-send
  PETREL_RETURN_IF_ERROR(
      WriteFileAtomic(node_.spec_path(), spec.ToJson().dump(2) + "\n", 0600, std::nullopt)
          .Annotate("saving the spec"));
  spdlog::info("accepted spec generation {} (role {}, fenced {})", spec.generation,
               RoleName(spec.role), spec.fenced);
  spec_ = spec;
  lease_.SetSpec(spec_);
  woken_ = true;
  wake_.notify_all();
  return Status::Ok();
}

Result<LeaseReply> InstanceManager::GrantLease(const LeaseGrant& grant) {
  const bool was_expired = lease_.State() == LeaseState::kExpired;
  PETREL_ASSIGN_OR_RETURN(LeaseReply reply, lease_.Grant(grant));
  if (was_expired) {
    spdlog::info("leadership lease for term {} granted ({} ms)", grant.term, grant.duration_ms);
    Wake();  // a fenced primary starts again now
  }
  return reply;
}

PeerConfirmReply InstanceManager::ConfirmLeader(const PeerConfirmRequest& request) const {
  PeerConfirmReply reply = DecidePeerConfirmation(CurrentSpec(), request);
  if (!reply.confirmed) {
    spdlog::info("not confirming {} as primary of term {}: {}", request.primary, request.term,
                 reply.reason);
  }
  return reply;
}

std::optional<InstanceSpec> InstanceManager::CurrentSpec() const {
  std::lock_guard<std::mutex> l(mu_);
  return spec_;
}

Result<SnapshotInfo> InstanceManager::TakeSnapshot(const SnapshotRequest& request) {
  if (!GetStatus().running) {
    return ConflictError("postgres is not running; a snapshot needs a running instance");
  }
  return snapshots_.Take(request, &stop_);
}

InstanceStatus InstanceManager::GetStatus() const {
  InstanceStatus s;
  bool lease_missing = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    s = status_;
    lease_missing = spec_ && LeaseRequired(*spec_) && lease_.State() == LeaseState::kExpired;
  }
  s.term = lease_.term();
  s.lease_remaining_ms = lease_.RemainingMs();
  // The loop publishes the fence once it has reaped postgres; readiness drops at once.
  if (lease_missing) s.ready = false;
  return s;
}

void InstanceManager::Loop() {
  while (!stop_) {
    Tick();
    std::unique_lock<std::mutex> l(mu_);
    wake_.wait_for(l, options_.tick, [this] { return woken_; });
    woken_ = false;
  }
  Status st = node_.Stop();
  if (!st.ok()) spdlog::error("stopping postgres: {}", st.ToString());
  std::lock_guard<std::mutex> l(mu_);
  status_.running = status_.ready = false;
  status_.phase = "stopped";
}

void InstanceManager::Tick() {
  std::optional<InstanceSpec> spec = CurrentSpec();
  InstanceSpec desired = spec.value_or(InstanceSpec());
  SqlFacts facts;
  ObservedInstance o = node_.Observe(desired, spec.has_value(), &facts);
  o.lease = lease_.State();
  InstanceAction action = PlanInstanceAction(o, desired);

  const bool acts = action.kind != ActionKind::kNone && action.kind != ActionKind::kWait &&
                    action.kind != ActionKind::kRefuse;
  if (acts && clock_.Now() < retry_after_) {
    Publish(o, facts, desired, {ActionKind::kWait, action.reason});
    return;
  }
  Publish(o, facts, desired, action);
  if (!acts) {
    if (action.kind == ActionKind::kNone) {
      failures_ = 0;
      error_.clear();
    }
    return;
  }
  spdlog::info("{}: {}", ActionName(action.kind), action.reason);
  Status st = Execute(action, desired, o);
  if (st.ok()) {
    failures_ = 0;
    error_.clear();
    retry_after_ = {};
    // Observe again right away: one action often enables the next.
    std::lock_guard<std::mutex> l(mu_);
    woken_ = true;
    return;
  }
  if (st.code() == Code::kCancelled) return;
  ++failures_;
  auto backoff = std::chrono::seconds(std::min(60, 1 << std::min(failures_ - 1, 6)));
  retry_after_ = clock_.Now() + backoff;
  error_ = std::string(ActionName(action.kind)) + " failed: " + st.message();
  spdlog::error("{} (attempt {}, retrying in {}s)", error_, failures_, backoff.count());
  Publish(o, facts, desired, action);
}

Status InstanceManager::Execute(const InstanceAction& action, const InstanceSpec& spec,
                                const ObservedInstance& o) {
  // The lease may have run out since it was observed: check again right before acting.
  const bool may_write = action.kind == ActionKind::kPromote ||
                         (action.kind == ActionKind::kStart && !o.standby_signal);
  if (may_write && LeaseRequired(spec) && lease_.State() == LeaseState::kExpired) {
    spdlog::info("not {}: {}", action.kind == ActionKind::kStart ? "starting" : "promoting",
                 lease_.DescribeExpiry());
    return Status::Ok();  // the next pass plans the wait
  }
  switch (action.kind) {
    case ActionKind::kInitdb:
      return node_.Initdb(spec);
    case ActionKind::kClone:
      return node_.Clone(spec);
    case ActionKind::kWriteConfig:
      return node_.WriteConfig(spec);
    case ActionKind::kStart:
      return node_.Start();
    case ActionKind::kStop:
      return node_.Stop();
    case ActionKind::kFence:
      return node_.StopImmediately();
    case ActionKind::kPromote:
      return node_.Promote(spec);
    case ActionKind::kRewind:
      return node_.Rewind(spec);
    case ActionKind::kReclone: {
      std::string moved_to;
      Status st = node_.Reclone(spec, &moved_to);
      if (!moved_to.empty()) {
        note_ = "pg_rewind failed; the old data directory was kept as " + moved_to;
        note_generation_ = spec.generation;
      }
      return st;
    }
    case ActionKind::kSyncSlots:
      return node_.SyncSlots(spec);
    case ActionKind::kCheckpoint:
      return node_.Checkpoint();
    case ActionKind::kRestore:
      return node_.RestoreSnapshot(spec);
    case ActionKind::kRekey:
      return node_.Rekey(spec);
    case ActionKind::kRecordUid:
      return node_.RecordClusterUid(spec.cluster_uid);
    case ActionKind::kNone:
    case ActionKind::kWait:
    case ActionKind::kRefuse:
      break;
  }
  return Status::Ok();
}

void InstanceManager::ShowRefusal(InstanceStatus* s) const {
  if (refusal_.empty()) return;
  // The last PUT /spec was refused for the data's identity; the controller must see why.
  s->phase = "refused";
  if (s->message.rfind("spec refused: ", 0) == 0) return;
  s->message = "spec refused: " + refusal_ + (s->message.empty() ? "" : "; " + s->message);
}

void InstanceManager::Publish(const ObservedInstance& o, const SqlFacts& f,
                              const InstanceSpec& spec, const InstanceAction& action) {
  InstanceStatus s;
  s.name = options_.node.name;
  s.initialized = o.has_data;
  s.running = o.accepting;
  s.role = o.accepting ? f.role : InstanceRole::kNone;
  const bool lease_missing = LeaseMissing(o, spec);
  s.ready = o.has_spec && o.accepting && !spec.fenced && f.role == spec.role && !lease_missing;
  // Fenced by the spec, or by a lease this primary does not hold.
  s.fenced = (spec.fenced || (lease_missing && !o.standby_signal)) && !o.postgres_running;
  s.phase = PhaseOf(action.kind, spec.fenced);
  if (s.fenced) s.phase = "fenced";
  std::vector<std::string> parts;
  if (!error_.empty()) parts.push_back(error_);
  if (lease_missing) parts.push_back(lease_.DescribeExpiry());
  if (!node_.last_crash().empty() && !o.accepting && !spec.fenced) {
    parts.push_back(node_.last_crash());
  }
  parts.push_back(action.reason);
  if (!note_.empty() && note_generation_ == spec.generation) parts.push_back(note_);
  for (size_t i = 0; i < parts.size(); ++i) s.message += (i ? "; " : "") + parts[i];
  s.system_identifier = f.system_identifier;
  s.timeline = f.timeline;
  s.current_lsn = f.current_lsn;
  s.received_lsn = f.received_lsn;
  s.replay_lsn = f.replay_lsn;
  s.streaming = f.streaming;
  s.following = f.following;
  s.lag_bytes = f.lag_bytes;
  s.pg_version = f.pg_version;
  s.pending_restart = f.pending_restart;
  s.cluster_uid = o.data_cluster_uid;
  std::lock_guard<std::mutex> l(mu_);
  ShowRefusal(&s);
  s.spec_generation = status_.spec_generation;
  // Fully applied only when the plan had nothing left to do for this very spec.
  if (action.kind == ActionKind::kNone && spec_ && *spec_ == spec) {
    s.spec_generation = spec.generation;
  }
  status_ = std::move(s);
}

}  // namespace petrel
