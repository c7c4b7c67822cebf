#include "backend/etcd/lease_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backend/etcd/errors.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

LeaseManager::LeaseManager(Transport* transport, Executor* executor, std::chrono::seconds ttl,
                           size_t max_keys_per_lease, BackendMetrics* metrics)
    : transport_(transport),
      executor_(executor),
      ttl_(ttl),
      max_keys_per_lease_(std::max<size_t>(max_keys_per_lease, 1)),
      lease_gauge_(metrics),
      observer_thread_(executor->clock(), std::make_shared<Strand>()) {}

std::optional<int64_t> LeaseManager::AttachLocked(std::string_view key) {
  if (auto it = key_lease_.find(key); it != key_lease_.end()) return it->second;
  if (current_ != 0 && leases_[current_].keys.size() < max_keys_per_lease_) {
    leases_[current_].keys.emplace(key);
    key_lease_.emplace(std::string(key), current_);
    return current_;
  }
  return std::nullopt;
}

std::optional<int64_t> LeaseManager::TryLeaseForKey(std::string_view key) {
  MutexLock guard(mu_);
  if (shutdown_) return std::nullopt;
  return AttachLocked(key);
}

absl::StatusOr<int64_t> LeaseManager::LeaseForKey(const Context& ctx, std::string_view key) {
  MutexLock lock(mu_);
  while (true) {
    if (shutdown_) return absl::FailedPreconditionError("etcd backend is closed");
    if (std::optional<int64_t> attached = AttachLocked(key)) return *attached;
    if (!granting_) break;
    if (!ctx.WaitOn(lock, cv_,
                    [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !granting_ || shutdown_; })) {
      return absl::Status(ctx.Err().code(),
                          absl::StrCat("waiting for an etcd lease: ", ctx.Err().message()));
    }
  }
  granting_ = true;
  lock.unlock();
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_.count());
  etcdserverpb::LeaseGrantResponse response;
  absl::Status status = transport_->LeaseGrant(ctx, request, &response);
  lock.lock();
  granting_ = false;
  cv_.notify_all();
  if (!status.ok()) return status;
  if (shutdown_) return absl::FailedPreconditionError("etcd backend is closed");
  int64_t id = response.id();
  auto [granted, inserted] = leases_.try_emplace(id);
  if (inserted) lease_gauge_.Add(1);
  LeaseInfo& info = granted->second;
  info.ttl_seconds = response.ttl() > 0 ? response.ttl() : ttl_.count();
  info.keys.emplace(key);
  key_lease_[std::string(key)] = id;
  current_ = id;
  ScheduleKeepAliveLocked();
  return id;
}

int64_t LeaseManager::LeaseOfKey(std::string_view key) const {
  MutexLock guard(mu_);
  auto it = key_lease_.find(key);
  return it == key_lease_.end() ? 0 : it->second;
}

void LeaseManager::DetachLocked(std::string_view key) {
  auto it = key_lease_.find(key);
  if (it == key_lease_.end()) return;
  if (auto lease = leases_.find(it->second); lease != leases_.end()) {
    if (auto k = lease->second.keys.find(key); k != lease->second.keys.end()) {
      lease->second.keys.erase(k);
    }
  }
  key_lease_.erase(it);
}

void LeaseManager::DetachKey(std::string_view key) {
  MutexLock guard(mu_);
  DetachLocked(key);
}

void LeaseManager::DetachPrefix(std::string_view prefix) {
  MutexLock guard(mu_);
  std::vector<std::string> keys;
  for (auto it = key_lease_.lower_bound(prefix);
       it != key_lease_.end() && absl::StartsWith(it->first, ToAbsl(prefix)); ++it) {
    keys.push_back(it->first);
  }
  for (const std::string& key : keys) DetachLocked(key);
}

void LeaseManager::OnLeaseLost(int64_t id, std::string_view reason) {
  std::vector<std::string> keys;
  {
    MutexLock guard(mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return;
    keys.assign(it->second.keys.begin(), it->second.keys.end());
    for (const std::string& key : keys) key_lease_.erase(key);
    leases_.erase(it);
    if (!shutdown_) lease_gauge_.Remove(1);
    if (current_ == id) current_ = 0;
  }
  spdlog::warn("etcd lease {:x} lost ({}); {} attached keys are reported as expired", id, reason,
               keys.size());
  if (keys.empty()) return;
  std::weak_ptr<LeaseManager> weak = weak_from_this();
  observer_thread_.Post([weak, keys = std::move(keys)] {
    if (auto self = weak.lock()) self->observers_.Dispatch(keys);
  });
}

void LeaseManager::SetObserver(std::string_view prefix, Observer fn) {
  observers_.Register(prefix, std::move(fn));
}

size_t LeaseManager::NumLeases() const {
  MutexLock guard(mu_);
  return leases_.size();
}

std::vector<int64_t> LeaseManager::LeaseIds() const {
  MutexLock guard(mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, info] : leases_) ids.push_back(id);
  return ids;
}

void LeaseManager::ScheduleKeepAliveLocked() {
  if (tick_scheduled_ || shutdown_ || leases_.empty()) return;
  int64_t ttl = ttl_.count();
  for (const auto& [id, info] : leases_) ttl = std::min(ttl, info.ttl_seconds);
  auto interval = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(ttl * 1000 / 3),
                                                      std::chrono::milliseconds(200));
  tick_scheduled_ = true;
  std::weak_ptr<LeaseManager> weak = weak_from_this();
  executor_->PostAfter(interval, [weak] {
    if (auto self = weak.lock()) self->KeepAliveTick();
  });
}

void LeaseManager::KeepAliveTick() {
  std::shared_ptr<KeepAliveRequests> stream;
  std::shared_ptr<KeepAliveRequests> silent;
  uint64_t generation = 0;
  {
    MutexLock guard(mu_);
    tick_scheduled_ = false;
    if (shutdown_ || leases_.empty()) return;
    if (stream_ && last_write_ > last_answer_) {
      // Nothing came back since the last tick's keep-alives: the member holding the stream
      // stopped answering (frozen, cut off) while the connection looks open. Leases last only a
      // few ticks, so a new stream (likely on another member) goes now.
      silent = std::move(stream_);
      stream_ = nullptr;
      ++stream_generation_;
    }
    stream = stream_;
    generation = stream_generation_;
  }
  if (silent) {
    spdlog::warn(
        "etcd lease keep-alive stream: no answer since the last keep-alive; opening a "
        "new stream");
    silent->Abandon();
  }
  if (!stream) {
    std::weak_ptr<LeaseManager> weak = weak_from_this();
    generation = [&] {
      MutexLock guard(mu_);
      return ++stream_generation_;
    }();
    absl::StatusOr<std::shared_ptr<KeepAliveRequests>> started = transport_->StartKeepAliveStream(
        [weak](etcdserverpb::LeaseKeepAliveResponse& response) {
          if (auto self = weak.lock()) self->OnKeepAliveResponse(response.id(), response.ttl());
        },
        [weak, generation](const absl::Status& status) {
          if (auto self = weak.lock()) self->OnKeepAliveDone(generation, status);
        });
    MutexLock guard(mu_);
    if (!started.ok()) {
      spdlog::warn("etcd lease keep-alive stream: {}", started.status().ToString());
    } else if (generation == stream_generation_) {
      stream_ = *started;
      stream = stream_;
    }
  }
  std::vector<int64_t> ids = LeaseIds();
  if (stream && !ids.empty()) {
    MutexLock guard(mu_);
    last_write_ = executor_->clock()->Now();
  }
  if (stream) {
    for (int64_t id : ids) {
      etcdserverpb::LeaseKeepAliveRequest request;
      request.set_id(id);
      stream->Write(std::move(request));
    }
  }
  MutexLock guard(mu_);
  ScheduleKeepAliveLocked();
}

// Whatever stream it came on: an answer is about a lease, not about the stream, and one that says
// the lease is gone stays true after its stream ended.
void LeaseManager::OnKeepAliveResponse(int64_t id, int64_t ttl) {
  {
    MutexLock guard(mu_);
    last_answer_ = executor_->clock()->Now();
  }
  if (ttl <= 0) OnLeaseLost(id, "keep-alive answered that it expired or was revoked");
}

void LeaseManager::OnKeepAliveDone(uint64_t generation, const absl::Status& status) {
  MutexLock guard(mu_);
  if (generation == stream_generation_) {
    stream_ = nullptr;
    // A new generation makes a late assignment of this stream (see KeepAliveTick) a no-op.
    ++stream_generation_;
  }
  if (!shutdown_) {
    spdlog::info("etcd lease keep-alive stream ended ({}); reopened at the next keep-alive",
                 status.ToString());
    if (IsAuthTokenError(status)) transport_->ForgetTokens();
  }
}

void LeaseManager::Shutdown() {
  std::shared_ptr<KeepAliveRequests> stream;
  {
    MutexLock guard(mu_);
    if (!shutdown_) lease_gauge_.Remove(static_cast<double>(leases_.size()));
    shutdown_ = true;
    stream = std::move(stream_);
    cv_.notify_all();
  }
  if (stream) stream->Cancel();
  observers_.Disable();
  observer_thread_.Shutdown();
}

}  // namespace kvstore::etcd
