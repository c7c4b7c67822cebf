// etcd's WriteBatcher: the client-side cost of a single-key write that goes alone or queues and
// travels in a transaction, with the requests answered at once by fakes (no gRPC, no etcd).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend/etcd/write_batcher.h"

namespace {

using kvstore::etcd::WriteBatcher;

// Writes `state.range(0)` at a time, behind one in flight: one request alone and a transaction
// of the rest, answered when the burst has been submitted.
void BM_WriteBatcherBurst(benchmark::State& state) {
  const int burst = static_cast<int>(state.range(0));
  std::vector<WriteBatcher::Done> singles;
  std::vector<std::function<void(const absl::Status&, etcdserverpb::TxnResponse&)>> txns;
  std::vector<int> txn_sizes;
  WriteBatcher batcher(
      WriteBatcher::Limits{.direct = 1},
      [&](WriteBatcher::Write&, WriteBatcher::Done done) { singles.push_back(std::move(done)); },
      [&](std::string, const etcdserverpb::TxnRequest& request, auto done) {
        txn_sizes.push_back(request.success_size());
        txns.push_back(std::move(done));
      });
  const std::string value(256, 'v');
  std::vector<std::string> keys;
  for (int i = 0; i < burst; ++i)
    keys.push_back(absl::StrCat("cilium/state/nodes/v1/default/node-", i));
  int64_t done_count = 0;
  for (auto _ : state) {
    for (int i = 0; i < burst; ++i) {
      etcdserverpb::RequestOp op;
      op.mutable_request_put()->set_key(keys[i]);
      op.mutable_request_put()->set_value(value);
      batcher.Submit(
          WriteBatcher::Write{
              .ctx = kvstore::Context::Background(), .what = "update", .op = std::move(op)},
          [&](const absl::Status&, etcdserverpb::ResponseOp&) { ++done_count; });
    }
    while (!singles.empty() || !txns.empty()) {
      if (!singles.empty()) {
        WriteBatcher::Done done = std::move(singles.back());
        singles.pop_back();
        etcdserverpb::ResponseOp response;
        done(absl::OkStatus(), response);
      } else {
        auto done = std::move(txns.back());
        const int size = txn_sizes.back();
        txns.pop_back();
        txn_sizes.pop_back();
        etcdserverpb::TxnResponse response;
        for (int i = 0; i < size; ++i) response.add_responses()->mutable_response_put();
        done(absl::OkStatus(), response);
      }
    }
  }
  state.SetItemsProcessed(done_count);
}
BENCHMARK(BM_WriteBatcherBurst)->Arg(1)->Arg(16)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
