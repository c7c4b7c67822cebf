// WriteBatcher: writes that queue behind writes in flight travel together in one transaction,
// and each keeps its own result. The requests go to fakes that the test completes by hand, on
// its own thread.
#include "backend/etcd/write_batcher.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvstore/context.h"

namespace kvstore::etcd {
namespace {

etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value) {
  etcdserverpb::RequestOp op;
  op.mutable_request_put()->set_key(key);
  op.mutable_request_put()->set_value(value);
  return op;
}

etcdserverpb::RequestOp DeleteOp(const std::string& key) {
  etcdserverpb::RequestOp op;
  op.mutable_request_delete_range()->set_key(key);
  return op;
}

std::string KeyOf(const etcdserverpb::RequestOp& op) {
  return op.has_request_put() ? op.request_put().key() : op.request_delete_range().key();
}

// The requests the batcher sent, not answered yet, and what each write got back.
class Fixture {
 public:
  explicit Fixture(WriteBatcher::Limits limits)
      : batcher_(
            limits,
            [this](WriteBatcher::Write& write, WriteBatcher::Done done) {
              singles.push_back(Single{KeyOf(write.op), write.op, std::move(done)});
            },
            [this](std::string, const etcdserverpb::TxnRequest& request, auto done) {
              txns.push_back(Txn{&request, std::move(done)});
            }) {}

  struct Single {
    std::string key;
    etcdserverpb::RequestOp op;
    WriteBatcher::Done done;
  };
  struct Txn {
    const etcdserverpb::TxnRequest* request;  // valid until answered
    std::function<void(const absl::Status&, etcdserverpb::TxnResponse&)> done;
    std::vector<std::string> Keys() const {
      std::vector<std::string> keys;
      for (const etcdserverpb::RequestOp& op : request->success()) keys.push_back(KeyOf(op));
      return keys;
    }
  };
  struct Result {
    absl::Status status;
    int64_t revision = 0;  // of the put's or delete's response header
    int calls = 0;
  };

  void Submit(const std::string& name, etcdserverpb::RequestOp op,
              const Context& ctx = Context::Background()) {
    batcher_.Submit(
        WriteBatcher::Write{.ctx = ctx, .what = absl::StrCat("write ", name), .op = std::move(op)},
        [this, name](const absl::Status& status, etcdserverpb::ResponseOp& response) {
          Result& r = results[name];
          r.status = status;
          r.revision = response.has_response_put()
                           ? response.response_put().header().revision()
                           : response.response_delete_range().header().revision();
          ++r.calls;
        });
  }

  // Answers the oldest single request with `status` (a response of `revision` when ok).
  void AnswerSingle(const absl::Status& status, int64_t revision = 0) {
    Single single = std::move(singles.front());
    singles.erase(singles.begin());
    etcdserverpb::ResponseOp response;
    if (single.op.has_request_put()) {
      response.mutable_response_put()->mutable_header()->set_revision(revision);
    } else {
      response.mutable_response_delete_range()->mutable_header()->set_revision(revision);
    }
    single.done(status, response);
  }

  // Answers the oldest transaction: ok gives operation i the revision `first_revision + i`.
  void AnswerTxn(const absl::Status& status, int64_t first_revision = 0) {
    Txn txn = std::move(txns.front());
    txns.erase(txns.begin());
    etcdserverpb::TxnResponse response;
    if (status.ok()) {
      response.set_succeeded(true);
      for (int i = 0; i < txn.request->success_size(); ++i) {
        etcdserverpb::ResponseOp* op = response.add_responses();
        if (txn.request->success(i).has_request_put()) {
          op->mutable_response_put()->mutable_header()->set_revision(first_revision + i);
        } else {
          op->mutable_response_delete_range()->mutable_header()->set_revision(first_revision + i);
        }
      }
    }
    txn.done(status, response);
  }

  WriteBatcher& batcher() { return batcher_; }

  std::vector<Single> singles;
  std::vector<Txn> txns;
  std::map<std::string, Result> results;

 private:
  WriteBatcher batcher_;
};

TEST(WriteBatcherTest, WritesGoAtOnceWhileFewerThanDirectAreInFlight) {
  Fixture f(WriteBatcher::Limits{.direct = 2});
  f.Submit("a", PutOp("a", "1"));
  f.Submit("b", DeleteOp("b"));
  ASSERT_EQ(f.singles.size(), 2u) << "nothing waits while the client is not busy";
  EXPECT_TRUE(f.txns.empty());
  f.AnswerSingle(absl::OkStatus(), 7);
  f.AnswerSingle(absl::OkStatus(), 8);
  EXPECT_EQ(f.results["a"].revision, 7);
  EXPECT_EQ(f.results["b"].revision, 8);
  EXPECT_EQ(f.batcher().transactions(), 0u);
}

TEST(WriteBatcherTest, WritesThatWaitedTravelTogetherInArrivalOrderAndEachGetsItsResponse) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  f.Submit("a", PutOp("a", "1"));
  f.Submit("b", PutOp("b", "2"));
  f.Submit("c", DeleteOp("c"));
  f.Submit("d", PutOp("d", "4"));
  ASSERT_EQ(f.singles.size(), 1u);
  EXPECT_TRUE(f.results.empty()) << "b, c and d wait for a";

  f.AnswerSingle(absl::OkStatus(), 10);
  EXPECT_EQ(f.results["a"].revision, 10);
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys(), (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_TRUE(f.txns[0].request->compare().empty()) << "unconditional";
  EXPECT_EQ(f.txns[0].request->success(0).request_put().value(), "2");

  f.AnswerTxn(absl::OkStatus(), 20);
  for (const auto& [name, revision] :
       std::map<std::string, int64_t>{{"b", 20}, {"c", 21}, {"d", 22}}) {
    EXPECT_TRUE(f.results[name].status.ok()) << name;
    EXPECT_EQ(f.results[name].revision, revision) << name;
    EXPECT_EQ(f.results[name].calls, 1) << name;
  }
  EXPECT_EQ(f.batcher().transactions(), 1u);
  EXPECT_EQ(f.batcher().batched_writes(), 3u);
  // Idle again: the next write goes at once.
  f.Submit("e", PutOp("e", "5"));
  EXPECT_EQ(f.singles.size(), 1u);
}

TEST(WriteBatcherTest, ATransactionNeverNamesAKeyTwiceAndALaterWriteOfAKeyGoesLater) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  f.Submit("first", PutOp("x", "0"));
  f.Submit("b", PutOp("b", "1"));
  f.Submit("x1", PutOp("x", "1"));
  f.Submit("x2", PutOp("x", "2"));
  f.Submit("c", PutOp("c", "3"));
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys(), (std::vector<std::string>{"b", "x"}));
  EXPECT_EQ(f.txns[0].request->success(1).request_put().value(), "1");
  f.AnswerTxn(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys(), (std::vector<std::string>{"x", "c"}));
  EXPECT_EQ(f.txns[0].request->success(0).request_put().value(), "2");
  f.AnswerTxn(absl::OkStatus());
  EXPECT_EQ(f.results.size(), 5u);
}

TEST(WriteBatcherTest, TransactionsStayWithinTheOperationAndByteLimits) {
  Fixture f(
      WriteBatcher::Limits{.direct = 1, .max_ops = 2, .max_bytes = 100, .op_overhead_bytes = 0});
  f.Submit("first", PutOp("k0", "v"));
  for (int i = 1; i <= 3; ++i) f.Submit(absl::StrCat("k", i), PutOp(absl::StrCat("k", i), "v"));
  f.Submit("big", PutOp("big", std::string(98, 'v')));  // alone over the budget with any other
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys(), (std::vector<std::string>{"k1", "k2"}));
  f.AnswerTxn(absl::OkStatus());
  ASSERT_TRUE(f.txns.empty());
  ASSERT_EQ(f.singles.size(), 1u) << "k3 and big together would be over 100 bytes";
  EXPECT_EQ(f.singles[0].key, "k3");
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.singles.size(), 1u) << "a write over the budget still goes, alone";
  EXPECT_EQ(f.singles[0].key, "big");
  f.AnswerSingle(absl::OkStatus());
  EXPECT_EQ(f.results.size(), 5u);
}

TEST(WriteBatcherTest, ATransactionRefusedForOneOfItsWritesIsSentAgainAsSeparateWrites) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  f.Submit("first", PutOp("a", "0"));
  f.Submit("allowed", PutOp("allowed/k", "1"));
  f.Submit("denied", PutOp("secret/k", "2"));
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  f.AnswerTxn(absl::PermissionDeniedError("etcdserver: permission denied"));
  ASSERT_EQ(f.singles.size(), 2u) << "each write again, alone";
  EXPECT_EQ(f.singles[0].key, "allowed/k");
  EXPECT_EQ(f.singles[0].op.request_put().value(), "1") << "the write's own operation";
  EXPECT_EQ(f.singles[1].key, "secret/k");
  EXPECT_TRUE(f.results.count("allowed") == 0) << "no result before its own answer";
  f.AnswerSingle(absl::OkStatus(), 5);
  f.AnswerSingle(absl::PermissionDeniedError("etcdserver: permission denied"));
  EXPECT_TRUE(f.results["allowed"].status.ok());
  EXPECT_EQ(f.results["allowed"].revision, 5);
  EXPECT_EQ(f.results["denied"].status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(f.results["allowed"].calls, 1);
  EXPECT_EQ(f.results["denied"].calls, 1);
}

TEST(WriteBatcherTest, ATransactionWhoseOutcomeIsUnknownGivesEachWriteItsStatus) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  f.Submit("first", PutOp("a", "0"));
  f.Submit("b", PutOp("b", "1"));
  f.Submit("c", PutOp("c", "2"));
  f.AnswerSingle(absl::OkStatus());
  f.AnswerTxn(absl::UnavailableError("connection reset"));
  EXPECT_TRUE(f.singles.empty()) << "not repeated: it may have been applied";
  for (const char* name : {"b", "c"}) {
    EXPECT_EQ(f.results[name].status.code(), absl::StatusCode::kUnavailable) << name;
    EXPECT_NE(f.results[name].status.message().find(absl::StrCat("write ", name)),
              std::string::npos)
        << f.results[name].status;
  }
}

TEST(WriteBatcherTest, ATransactionOverEtcdsLimitGoesAgainAloneAndLaterOnesAreSmaller) {
  Fixture f(WriteBatcher::Limits{.direct = 1, .max_ops = 8});
  f.Submit("first", PutOp("a", "0"));
  for (int i = 0; i < 4; ++i) f.Submit(absl::StrCat(i), PutOp(absl::StrCat("k", i), "v"));
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys().size(), 4u);
  f.AnswerTxn(absl::InvalidArgumentError("etcdserver: too many operations in txn request"));
  ASSERT_EQ(f.singles.size(), 4u);
  // Those four in flight (not counted) and one counted: the next ones wait behind it.
  f.Submit("busy", PutOp("busy", "0"));
  for (int i = 4; i < 8; ++i) f.Submit(absl::StrCat(i), PutOp(absl::StrCat("k", i), "v"));
  ASSERT_EQ(f.singles.size(), 5u);
  f.AnswerSingle(absl::OkStatus());  // k0 (not counted): nothing moves
  EXPECT_TRUE(f.txns.empty());
  while (f.singles.size() > 1) f.AnswerSingle(absl::OkStatus());
  f.AnswerSingle(absl::OkStatus());  // busy
  ASSERT_EQ(f.txns.size(), 1u);
  EXPECT_EQ(f.txns[0].Keys().size(), 2u) << "half of the refused transaction's 4";
  EXPECT_EQ(f.results.size(), 6u);
}

TEST(WriteBatcherTest, AWriteWhoseContextEndsWhileWaitingEndsAtOnceAndIsNeverSent) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  auto [ctx, cancel] = WithCancel(Context::Background());
  f.Submit("first", PutOp("a", "0"));
  f.Submit("gone", PutOp("gone", "1"), ctx);
  f.Submit("b", PutOp("b", "2"));
  cancel();
  ASSERT_EQ(f.results.count("gone"), 1u) << "ends with its context, not with the request ahead";
  EXPECT_EQ(f.results["gone"].status.code(), absl::StatusCode::kCancelled);
  EXPECT_NE(f.results["gone"].status.message().find("write gone"), std::string::npos);
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.singles.size(), 1u) << "b alone: the cancelled write is left out";
  EXPECT_EQ(f.singles[0].key, "b");
  EXPECT_TRUE(f.txns.empty());
  f.AnswerSingle(absl::OkStatus());
  EXPECT_EQ(f.results["gone"].calls, 1);
}

TEST(WriteBatcherTest, AWriteStartedWithAContextDoneWhileBusyEndsAtOnce) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  f.Submit("first", PutOp("a", "0"));
  f.Submit("late", PutOp("late", "1"), ctx);
  EXPECT_EQ(f.results["late"].status.code(), absl::StatusCode::kCancelled);
  f.AnswerSingle(absl::OkStatus());
  EXPECT_TRUE(f.singles.empty());
  EXPECT_TRUE(f.txns.empty());
}

TEST(WriteBatcherTest, AContextEndingWhileItsTransactionTravelsReportsOnceAndSparesTheOthers) {
  Fixture f(WriteBatcher::Limits{.direct = 1});
  auto [ctx, cancel] = WithCancel(Context::Background());
  f.Submit("first", PutOp("a", "0"));
  f.Submit("leaves", PutOp("leaves", "1"), ctx);
  f.Submit("stays", PutOp("stays", "2"));
  f.AnswerSingle(absl::OkStatus());
  ASSERT_EQ(f.txns.size(), 1u);
  cancel();
  EXPECT_EQ(f.results["leaves"].status.code(), absl::StatusCode::kCancelled);
  f.AnswerTxn(absl::OkStatus(), 3);
  EXPECT_EQ(f.results["leaves"].calls, 1) << "the late answer is not reported again";
  EXPECT_EQ(f.results["leaves"].status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(f.results["stays"].status.ok());
  EXPECT_EQ(f.results["stays"].revision, 4);
}

}  // namespace
}  // namespace kvstore::etcd
