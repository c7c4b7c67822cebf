#include "tests/backend/etcd/fake_transport.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace kvstore::etcd::testing {

mvccpb::Event FakeTransport::ChangeLocked(const std::string& key,
                                          const std::optional<std::string>& value) {
  // The revision being made: states_.back() is its key space.
  const int64_t revision = static_cast<int64_t>(states_.size());
  KeySpace& now = states_.back();
  mvccpb::Event event;
  if (value) {
    mvccpb::KeyValue& kv = now[key];
    if (kv.create_revision() == 0) kv.set_create_revision(revision);
    kv.set_key(key);
    kv.set_value(*value);
    kv.set_mod_revision(revision);
    kv.set_version(kv.version() + 1);
    event.set_type(mvccpb::Event::PUT);
    *event.mutable_kv() = kv;
  } else {
    auto it = now.find(key);
    event.set_type(mvccpb::Event::DELETE);
    if (it != now.end()) {
      *event.mutable_prev_kv() = it->second;
      now.erase(it);
    }
    event.mutable_kv()->set_key(key);
    event.mutable_kv()->set_mod_revision(revision);
  }
  return event;
}

std::vector<mvccpb::Event> FakeTransport::Txn(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
  std::lock_guard<std::mutex> guard(mu_);
  states_.push_back(states_.back());
  std::vector<mvccpb::Event> events;
  for (const auto& [key, value] : changes) events.push_back(ChangeLocked(key, value));
  history_.push_back(events);
  return events;
}

mvccpb::Event FakeTransport::Put(const std::string& key, const std::string& value) {
  return Txn({{key, value}}).front();
}

mvccpb::Event FakeTransport::Delete(const std::string& key) {
  return Txn({{key, std::nullopt}}).front();
}

std::vector<std::vector<mvccpb::Event>> FakeTransport::HistorySince(int64_t revision) const {
  std::lock_guard<std::mutex> guard(mu_);
  std::vector<std::vector<mvccpb::Event>> since;
  // history_[i] made revision i + 2.
  for (int64_t r = std::max<int64_t>(revision, 2); r - 2 < static_cast<int64_t>(history_.size());
       ++r) {
    since.push_back(history_[r - 2]);
  }
  return since;
}

int64_t FakeTransport::CompactedRevision() const {
  std::lock_guard<std::mutex> guard(mu_);
  return compacted_;
}

void FakeTransport::Compact(int64_t revision) {
  std::lock_guard<std::mutex> guard(mu_);
  compacted_ = revision;
}

int64_t FakeTransport::Revision() const {
  std::lock_guard<std::mutex> guard(mu_);
  return static_cast<int64_t>(states_.size());
}

absl::Status FakeTransport::AnswerLocked(const etcdserverpb::RangeRequest& request,
                                         etcdserverpb::RangeResponse* response) const {
  const int64_t current = static_cast<int64_t>(states_.size());
  const int64_t revision = request.revision() == 0 ? current : request.revision();
  if (revision < compacted_) {
    return absl::OutOfRangeError("etcdserver: mvcc: required revision has been compacted");
  }
  if (revision > current)
    return absl::OutOfRangeError("etcdserver: mvcc: required revision is a future revision");
  const KeySpace& state = states_[revision - 1];
  response->mutable_header()->set_revision(current);
  const bool to_the_end = request.range_end() == std::string(1, '\0');
  for (auto it = state.lower_bound(request.key()); it != state.end(); ++it) {
    if (request.range_end().empty() ? it->first != request.key()
                                    : !to_the_end && it->first >= request.range_end()) {
      break;
    }
    if (request.limit() > 0 && response->kvs_size() == request.limit()) {
      response->set_more(true);
      break;
    }
    *response->add_kvs() = it->second;
  }
  return absl::OkStatus();
}

void FakeTransport::AsyncRange(std::string /*what*/, const etcdserverpb::RangeRequest& request,
                               Callback<etcdserverpb::RangeResponse> done) {
  absl::Status status;
  etcdserverpb::RangeResponse response;
  {
    std::lock_guard<std::mutex> guard(mu_);
    ++num_ranges_;
    if (range_failures_left_ > 0) {
      --range_failures_left_;
      status = range_failure_;
    } else if (hold_ranges_) {
      held_ranges_.push_back(HeldRange{request, std::move(done)});
      return;
    } else {
      status = AnswerLocked(request, &response);
    }
  }
  done(status, response);
}

void FakeTransport::HoldRanges(bool hold) {
  std::lock_guard<std::mutex> guard(mu_);
  hold_ranges_ = hold;
}

size_t FakeTransport::ReleaseHeldRanges() {
  std::deque<HeldRange> held;
  {
    std::lock_guard<std::mutex> guard(mu_);
    held.swap(held_ranges_);
  }
  for (HeldRange& range : held) {
    etcdserverpb::RangeResponse response;
    absl::Status status;
    {
      std::lock_guard<std::mutex> guard(mu_);
      status = AnswerLocked(range.request, &response);
    }
    range.done(status, response);
  }
  return held.size();
}

size_t FakeTransport::NumHeldRanges() const {
  std::lock_guard<std::mutex> guard(mu_);
  return held_ranges_.size();
}

size_t FakeTransport::NumRanges() const {
  std::lock_guard<std::mutex> guard(mu_);
  return num_ranges_;
}

void FakeTransport::FailRanges(absl::Status status, int count) {
  std::lock_guard<std::mutex> guard(mu_);
  range_failure_ = std::move(status);
  range_failures_left_ = count;
}

absl::StatusOr<std::shared_ptr<WatchRequests>> FakeTransport::StartWatchStream(
    ReadHandler<etcdserverpb::WatchResponse> on_read, DoneHandler on_done) {
  std::shared_ptr<FakeWatchStream> stream;
  std::optional<absl::Status> end_at_start;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (watch_failures_left_ > 0) {
      --watch_failures_left_;
      return watch_failure_;
    }
    stream = std::make_shared<FakeWatchStream>(std::move(on_read), std::move(on_done));
    watch_streams_.push_back(stream);
    if (watch_ends_at_start_left_ > 0) {
      --watch_ends_at_start_left_;
      end_at_start = watch_end_at_start_;
    }
  }
  if (end_at_start) stream->End(*end_at_start);
  return std::shared_ptr<WatchRequests>(stream);
}

void FakeTransport::EndWatchStreamsWhileStarting(absl::Status status, int count) {
  std::lock_guard<std::mutex> guard(mu_);
  watch_end_at_start_ = std::move(status);
  watch_ends_at_start_left_ = count;
}

size_t FakeTransport::NumWatchStreams() const {
  std::lock_guard<std::mutex> guard(mu_);
  return watch_streams_.size();
}

std::shared_ptr<FakeWatchStream> FakeTransport::WatchStream(size_t index) const {
  std::lock_guard<std::mutex> guard(mu_);
  return index < watch_streams_.size() ? watch_streams_[index] : nullptr;
}

std::shared_ptr<FakeWatchStream> FakeTransport::LatestWatchStream() const {
  std::lock_guard<std::mutex> guard(mu_);
  return watch_streams_.empty() ? nullptr : watch_streams_.back();
}

void FakeTransport::FailWatchStreams(absl::Status status, int count) {
  std::lock_guard<std::mutex> guard(mu_);
  watch_failure_ = std::move(status);
  watch_failures_left_ = count;
}

absl::StatusOr<std::shared_ptr<KeepAliveRequests>> FakeTransport::StartKeepAliveStream(
    ReadHandler<etcdserverpb::LeaseKeepAliveResponse> on_read, DoneHandler on_done) {
  std::lock_guard<std::mutex> guard(mu_);
  auto stream = std::make_shared<FakeKeepAliveStream>(std::move(on_read), std::move(on_done));
  keep_alive_streams_.push_back(stream);
  return std::shared_ptr<KeepAliveRequests>(stream);
}

size_t FakeTransport::NumKeepAliveStreams() const {
  std::lock_guard<std::mutex> guard(mu_);
  return keep_alive_streams_.size();
}

std::shared_ptr<FakeKeepAliveStream> FakeTransport::KeepAliveStream(size_t index) const {
  std::lock_guard<std::mutex> guard(mu_);
  return index < keep_alive_streams_.size() ? keep_alive_streams_[index] : nullptr;
}

std::shared_ptr<FakeKeepAliveStream> FakeTransport::LatestKeepAliveStream() const {
  std::lock_guard<std::mutex> guard(mu_);
  return keep_alive_streams_.empty() ? nullptr : keep_alive_streams_.back();
}

absl::Status FakeTransport::LeaseGrant(const Context& ctx,
                                       const etcdserverpb::LeaseGrantRequest& request,
                                       etcdserverpb::LeaseGrantResponse* response) {
  if (ctx.Done()) return ctx.Err();
  std::lock_guard<std::mutex> guard(mu_);
  ++lease_grants_;
  response->set_id(next_lease_id_++);
  response->set_ttl(request.ttl());
  return absl::OkStatus();
}

absl::Status FakeTransport::LeaseRevoke(const Context& /*ctx*/,
                                        const etcdserverpb::LeaseRevokeRequest& /*request*/,
                                        etcdserverpb::LeaseRevokeResponse* /*response*/) {
  return absl::OkStatus();
}

void FakeTransport::ForgetTokens() {
  std::lock_guard<std::mutex> guard(mu_);
  ++token_resets_;
}

size_t FakeTransport::NumLeaseGrants() const {
  std::lock_guard<std::mutex> guard(mu_);
  return lease_grants_;
}

size_t FakeTransport::NumTokenResets() const {
  std::lock_guard<std::mutex> guard(mu_);
  return token_resets_;
}

etcdserverpb::WatchResponse WatchEvents(int64_t watch_id, std::vector<mvccpb::Event> events) {
  etcdserverpb::WatchResponse response;
  response.set_watch_id(watch_id);
  int64_t revision = 0;
  for (mvccpb::Event& event : events) {
    revision = std::max(revision, event.kv().mod_revision());
    *response.add_events() = std::move(event);
  }
  response.mutable_header()->set_revision(revision);
  return response;
}

etcdserverpb::WatchResponse WatchCreated(int64_t watch_id, int64_t revision) {
  etcdserverpb::WatchResponse response;
  response.set_watch_id(watch_id);
  response.set_created(true);
  response.mutable_header()->set_revision(revision);
  return response;
}

etcdserverpb::WatchResponse WatchCompacted(int64_t watch_id, int64_t compact_revision) {
  etcdserverpb::WatchResponse response;
  response.set_watch_id(watch_id);
  response.set_canceled(true);
  response.set_compact_revision(compact_revision);
  response.set_cancel_reason("mvcc: required revision has been compacted");
  return response;
}

etcdserverpb::LeaseKeepAliveResponse KeepAliveAnswer(int64_t id, int64_t ttl) {
  etcdserverpb::LeaseKeepAliveResponse response;
  response.set_id(id);
  response.set_ttl(ttl);
  return response;
}

}  // namespace kvstore::etcd::testing

namespace kvstore::etcd::testing {
namespace {

bool InRange(const std::string& key, const std::string& start, const std::string& end) {
  if (end.empty()) return key == start;
  return key >= start && (end == std::string(1, '\0') || key < end);
}

}  // namespace

void FakeWatchServer::Serve() {
  std::shared_ptr<FakeWatchStream> latest = transport_.LatestWatchStream();
  if (latest != stream_) {
    stream_ = latest;
    seen_ = 0;
    open_.clear();
  }
  if (!stream_ || stream_->ended()) return;
  std::vector<etcdserverpb::WatchRequest> requests = stream_->Requests();
  for (; seen_ < requests.size(); ++seen_) {
    const etcdserverpb::WatchRequest& request = requests[seen_];
    if (request.has_cancel_request()) {
      const int64_t id = request.cancel_request().watch_id();
      if (open_.erase(id) > 0) {
        etcdserverpb::WatchResponse cancelled;
        cancelled.set_watch_id(id);
        cancelled.set_canceled(true);
        stream_->Push(cancelled);
      }
      continue;
    }
    if (request.has_progress_request()) {
      // As etcd: a progress notification for every open watch.
      for (const auto& [id, watch] : open_) {
        etcdserverpb::WatchResponse progress;
        progress.set_watch_id(id);
        progress.mutable_header()->set_revision(transport_.Revision());
        stream_->Push(progress);
      }
      continue;
    }
    const etcdserverpb::WatchCreateRequest& create = request.create_request();
    ++creates_;
    const int64_t id = create.watch_id();
    stream_->Push(WatchCreated(id, transport_.Revision()));
    if (create.start_revision() < transport_.CompactedRevision()) {
      stream_->Push(WatchCompacted(id, transport_.CompactedRevision()));
      continue;
    }
    Watch& watch = open_[id];
    watch.start = create.key();
    watch.end = create.range_end();
    for (const std::vector<mvccpb::Event>& events :
         transport_.HistorySince(create.start_revision())) {
      SendTo(id, watch, events);
    }
  }
}

void FakeWatchServer::Send(const std::vector<mvccpb::Event>& events) {
  Serve();
  for (const auto& [id, watch] : open_) SendTo(id, watch, events);
}

void FakeWatchServer::SendTo(int64_t id, const Watch& watch,
                             const std::vector<mvccpb::Event>& events) {
  std::vector<mvccpb::Event> matching;
  for (const mvccpb::Event& event : events) {
    if (InRange(event.kv().key(), watch.start, watch.end)) matching.push_back(event);
  }
  if (!matching.empty()) stream_->Push(WatchEvents(id, std::move(matching)));
}

size_t FakeWatchServer::NumOpenWatches() {
  Serve();
  return open_.size();
}

}  // namespace kvstore::etcd::testing
