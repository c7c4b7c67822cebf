// A Transport without etcd, for unit tests of the WatchHub and the LeaseManager: Range is answered
// from an in-test key space with its history (so pages pinned at a revision stay consistent),
// watch and keep-alive streams are scripted (the test reads what was written to them, pushes
// responses and ends them with a status), and lease grants are counted and numbered.
//
// Handlers run on the thread of the test call that triggers them (Push, End, an answered Range),
// standing in for a transport thread; one stream's handlers never run concurrently.
#ifndef KVSTORE_TESTS_BACKEND_ETCD_FAKE_TRANSPORT_H_
#define KVSTORE_TESTS_BACKEND_ETCD_FAKE_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "backend/etcd/transport.h"

namespace kvstore::etcd::testing {

// One scripted stream. Write records; Cancel ends it with Cancelled (its done handler runs on the
// cancelling thread).
template <typename Request, typename Response>
class FakeStream final : public RequestStream<Request> {
 public:
  FakeStream(Transport::ReadHandler<Response> on_read, Transport::DoneHandler on_done)
      : on_read_(std::move(on_read)), on_done_(std::move(on_done)) {}

  void Write(Request request) override {
    std::lock_guard<std::mutex> guard(mu_);
    if (!ended_) requests_.push_back(std::move(request));
  }
  void Cancel() override { End(absl::CancelledError("stream cancelled")); }

  // Hands `response` to the reader, unless the stream ended.
  void Push(Response response) {
    std::lock_guard<std::mutex> delivering(deliver_mu_);
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (ended_) return;
    }
    on_read_(response);
  }
  // Ends the stream with `status` (once; later calls do nothing).
  void End(const absl::Status& status) {
    Transport::DoneHandler on_done;
    std::lock_guard<std::mutex> delivering(deliver_mu_);
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (ended_) return;
      ended_ = true;
      on_done = std::move(on_done_);
    }
    on_read_ = nullptr;
    on_done(status);
  }

  bool ended() const {
    std::lock_guard<std::mutex> guard(mu_);
    return ended_;
  }
  std::vector<Request> Requests() const {
    std::lock_guard<std::mutex> guard(mu_);
    return requests_;
  }
  size_t NumRequests() const {
    std::lock_guard<std::mutex> guard(mu_);
    return requests_.size();
  }

 private:
  std::mutex deliver_mu_;  // held while a handler runs: one at a time, none after the end
  Transport::ReadHandler<Response> on_read_;
  Transport::DoneHandler on_done_;
  mutable std::mutex mu_;  // guards requests_ and ended_
  std::vector<Request> requests_;
  bool ended_ = false;
};

using FakeWatchStream = FakeStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
using FakeKeepAliveStream =
    FakeStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

class FakeTransport final : public Transport {
 public:
  FakeTransport() = default;
  FakeTransport(const FakeTransport&) = delete;
  FakeTransport& operator=(const FakeTransport&) = delete;

  // --- The key space. Each change is a new revision (the empty store is at revision 1).
  // Writes `key` and returns the watch event that reports it.
  mvccpb::Event Put(const std::string& key, const std::string& value);
  // Deletes `key` (which must exist) and returns the watch event that reports it.
  mvccpb::Event Delete(const std::string& key);
  // Several changes in one revision, like a transaction: puts (value set) and deletes (nullopt).
  std::vector<mvccpb::Event> Txn(
      const std::vector<std::pair<std::string, std::optional<std::string>>>& changes);
  // Ranges at revisions before `revision`, and watches starting before it, now fail as
  // compacted (as in etcd, `revision` itself stays readable).
  void Compact(int64_t revision);
  int64_t CompactedRevision() const;
  int64_t Revision() const;
  // The events of every revision from `revision` on, one list per revision.
  std::vector<std::vector<mvccpb::Event>> HistorySince(int64_t revision) const;

  // --- Ranges. Answered at once (on the calling thread) unless held.
  void HoldRanges(bool hold);
  // Answers the held ranges, oldest first, from the key space as it is now; returns how many.
  size_t ReleaseHeldRanges();
  size_t NumHeldRanges() const;
  // Ranges asked for so far (answered or held).
  size_t NumRanges() const;
  // The next `count` ranges fail with `status`.
  void FailRanges(absl::Status status, int count = 1);

  // --- Watch streams: each StartWatchStream opens a new one.
  size_t NumWatchStreams() const;
  std::shared_ptr<FakeWatchStream> WatchStream(size_t index) const;
  std::shared_ptr<FakeWatchStream> LatestWatchStream() const;
  // The next `count` StartWatchStream calls fail with `status`.
  void FailWatchStreams(absl::Status status, int count = 1);
  // The next `count` StartWatchStream calls open a stream and end it with `status` before they
  // return, as gRPC may when the call fails at once (its done handler runs first).
  void EndWatchStreamsWhileStarting(absl::Status status, int count = 1);

  // --- Keep-alive streams.
  size_t NumKeepAliveStreams() const;
  std::shared_ptr<FakeKeepAliveStream> KeepAliveStream(size_t index) const;
  std::shared_ptr<FakeKeepAliveStream> LatestKeepAliveStream() const;

  // --- Leases: ids 1000, 1001, ... with the requested TTL.
  size_t NumLeaseGrants() const;
  size_t NumTokenResets() const;

  // Transport.
  void AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                  Callback<etcdserverpb::RangeResponse> done) override;
  absl::StatusOr<std::shared_ptr<WatchRequests>> StartWatchStream(
      ReadHandler<etcdserverpb::WatchResponse> on_read, DoneHandler on_done) override;
  absl::StatusOr<std::shared_ptr<KeepAliveRequests>> StartKeepAliveStream(
      ReadHandler<etcdserverpb::LeaseKeepAliveResponse> on_read, DoneHandler on_done) override;
  absl::Status LeaseGrant(const Context& ctx, const etcdserverpb::LeaseGrantRequest& request,
                          etcdserverpb::LeaseGrantResponse* response) override;
  absl::Status LeaseRevoke(const Context& ctx, const etcdserverpb::LeaseRevokeRequest& request,
                           etcdserverpb::LeaseRevokeResponse* response) override;
  void ForgetTokens() override;

 private:
  using KeySpace = std::map<std::string, mvccpb::KeyValue>;
  struct HeldRange {
    etcdserverpb::RangeRequest request;
    Callback<etcdserverpb::RangeResponse> done;
  };

  // The answer to `request` from the history. REQUIRES: mu_ held.
  absl::Status AnswerLocked(const etcdserverpb::RangeRequest& request,
                            etcdserverpb::RangeResponse* response) const;
  mvccpb::Event ChangeLocked(const std::string& key, const std::optional<std::string>& value);

  mutable std::mutex mu_;  // guards everything below
  // states_[r] is the key space at revision r + 1.
  std::vector<KeySpace> states_{KeySpace()};
  std::vector<std::vector<mvccpb::Event>> history_;  // history_[i] made revision i + 2
  int64_t compacted_ = 0;
  bool hold_ranges_ = false;
  std::deque<HeldRange> held_ranges_;
  size_t num_ranges_ = 0;
  absl::Status range_failure_;
  int range_failures_left_ = 0;
  std::vector<std::shared_ptr<FakeWatchStream>> watch_streams_;
  absl::Status watch_failure_;
  int watch_failures_left_ = 0;
  absl::Status watch_end_at_start_;
  int watch_ends_at_start_left_ = 0;
  std::vector<std::shared_ptr<FakeKeepAliveStream>> keep_alive_streams_;
  int64_t next_lease_id_ = 1000;
  size_t lease_grants_ = 0;
  size_t token_resets_ = 0;
};

// Answers the watch requests of the latest watch stream the way etcd does, when the test asks
// (so that it decides when the server speaks): a create gets `created` and then the events since
// its start revision (one response per revision), or a compaction cancel when that revision is
// compacted; a cancel closes the watch. Send hands a revision's events to every open watch.
// Used from the test's thread only.
class FakeWatchServer {
 public:
  explicit FakeWatchServer(FakeTransport& transport) : transport_(transport) {}

  // Answers the requests written since the last call (on a new stream: all of them).
  void Serve();
  // Serve(), then sends the events of one revision to every open watch whose range holds some.
  void Send(const std::vector<mvccpb::Event>& events);
  // Serve(), then the number of open watches.
  size_t NumOpenWatches();
  // Create requests answered so far, on every stream.
  size_t NumCreates() const { return creates_; }

 private:
  struct Watch {
    std::string start, end;
  };
  void SendTo(int64_t id, const Watch& watch, const std::vector<mvccpb::Event>& events);

  FakeTransport& transport_;
  std::shared_ptr<FakeWatchStream> stream_;
  size_t seen_ = 0;  // requests of stream_ answered
  std::map<int64_t, Watch> open_;
  size_t creates_ = 0;
};

// Builders of what the server sends.
etcdserverpb::WatchResponse WatchEvents(int64_t watch_id, std::vector<mvccpb::Event> events);
etcdserverpb::WatchResponse WatchCreated(int64_t watch_id, int64_t revision);
etcdserverpb::WatchResponse WatchCompacted(int64_t watch_id, int64_t compact_revision);
etcdserverpb::LeaseKeepAliveResponse KeepAliveAnswer(int64_t id, int64_t ttl);

}  // namespace kvstore::etcd::testing

#endif  // KVSTORE_TESTS_BACKEND_ETCD_FAKE_TRANSPORT_H_
