// Bad input to the in-memory backend beyond the conformance suite: empty keys on every call,
// limits on values and keys (a rejected write changes nothing and notifies no watcher), readable
// error messages for binary keys, and arbitrary bytes round-tripping.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/memory/in_memory_store.h"
#include "tests/backend_conformance/watch_tracker.h"

namespace kvstore::memory {
namespace {

using ::kvstore::testing::StringMap;
using ::kvstore::testing::WatchTracker;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kTimeout = std::chrono::seconds(30);
// Long enough for a watcher to deliver an event that should not exist.
constexpr auto kQuietPeriod = std::chrono::milliseconds(100);

class InMemoryBadInputTest : public ::testing::Test {
 protected:
  std::shared_ptr<InMemoryStore> store_ = InMemoryStore::Create();
  std::shared_ptr<Backend> client_ = store_->NewClient("bad-input");
};

std::optional<std::string> ValueAt(Backend& client, const std::string& key) {
  auto value = client.Get(Context(), key);
  EXPECT_TRUE(value.ok()) << value.status();
  return value.ok() ? *value : std::nullopt;
}

TEST_F(InMemoryBadInputTest, EmptyKeyIsInvalidForReadsAndDeletesToo) {
  const int64_t revision = store_->Revision();
  EXPECT_EQ(client_->Get(Context(), "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Delete(Context(), "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Update(Context(), "", "v", true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Update(Context(), "", "v", false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Revision(), revision) << "a rejected write must not create a revision";
}

TEST_F(InMemoryBadInputTest, ValueOfExactlyTheLimitIsAcceptedByEveryWrite) {
  const std::string at_limit(kMaxValueBytes, 'v');
  EXPECT_TRUE(client_->Update(Context(), "k/update", at_limit, false).ok());
  auto written = client_->UpdateIfDifferent(Context(), "k/if-different", at_limit, true);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(*written);
  auto created = client_->CreateOnly(Context(), "k/create", at_limit, false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  for (const char* key : {"k/update", "k/if-different", "k/create"}) {
    EXPECT_TRUE(ValueAt(*client_, key) == at_limit) << key;
  }
}

TEST_F(InMemoryBadInputTest, OversizedValueLeavesTheExistingValueAndWatchersUntouched) {
  ASSERT_TRUE(client_->Update(Context(), "k/a", "old", true).ok());
  auto watcher = client_->ListAndWatch(Context(), "k/", 8);
  WatchTracker tracker(watcher, "k/");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));
  const int64_t revision = store_->Revision();

  const std::string too_big(kMaxValueBytes + 1, 'x');
  absl::Status update = client_->Update(Context(), "k/a", too_big, true);
  EXPECT_EQ(update.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(update.message(), HasSubstr(std::to_string(kMaxValueBytes + 1)));
  EXPECT_EQ(client_->UpdateIfDifferent(Context(), "k/a", too_big, false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client_->CreateOnly(Context(), "k/b", too_big, false).status().code(),
            absl::StatusCode::kResourceExhausted);

  EXPECT_EQ(ValueAt(*client_, "k/a"), "old");
  EXPECT_EQ(ValueAt(*client_, "k/b"), std::nullopt);
  EXPECT_EQ(store_->Revision(), revision);
  EXPECT_FALSE(tracker.Read(kQuietPeriod).has_value()) << "a rejected write reached a watcher";

  // The client is still usable afterwards.
  ASSERT_TRUE(client_->Update(Context(), "k/a", "new", true).ok());
  EXPECT_TRUE(tracker.ReadUntilView({{"k/a", "new"}}, kTimeout));
  watcher->Stop();
}

TEST_F(InMemoryBadInputTest, OversizedKeyIsRejectedByEveryWrite) {
  const int64_t revision = store_->Revision();
  const std::string huge_key(kMaxValueBytes + 1, 'k');
  EXPECT_EQ(client_->Update(Context(), huge_key, "v", false).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client_->UpdateIfDifferent(Context(), huge_key, "v", false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client_->CreateOnly(Context(), huge_key, "v", true).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->Revision(), revision);
}

TEST_F(InMemoryBadInputTest, ErrorMessagesShowBinaryKeysEscapedAndShortened) {
  const std::string key = "k/" + std::string("\xff\x00\x01", 3) + std::string(1000, 'n');
  absl::Status status =
      client_->Update(Context(), key, std::string(kMaxValueBytes + 1, 'x'), false);
  ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("\\xff"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr(std::string(1, '\0'))));
  EXPECT_LT(status.message().size(), 500u) << "the whole key was copied into the message";
}

TEST_F(InMemoryBadInputTest, LongKeyNameRoundTrips) {
  const std::string key = "k/" + std::string(64 * 1024, 'n') + "\xff";
  auto watcher = client_->ListAndWatch(Context(), "k/", 8);
  WatchTracker tracker(watcher, "k/");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));

  ASSERT_TRUE(client_->Update(Context(), key, "v", true).ok());
  EXPECT_EQ(ValueAt(*client_, key), "v");
  auto listed = client_->ListPrefix(Context(), "k/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->begin()->first, key);
  EXPECT_TRUE(tracker.ReadUntilView({{key, "v"}}, kTimeout));

  ASSERT_TRUE(client_->Delete(Context(), key).ok());
  EXPECT_TRUE(tracker.ReadUntilView({}, kTimeout));
  watcher->Stop();
}

TEST_F(InMemoryBadInputTest, ArbitraryBytesRoundTripThroughEveryCall) {
  const std::string prefix("p\xc3\x28/", 4);  // invalid UTF-8 in the prefix itself
  const StringMap pairs = {
      {prefix + std::string("\0", 1), std::string("\0\0", 2)},
      {prefix + "\xff\xfe", "\x80\x81\xc0"},
      {prefix + "\xed\xa0\x80", "\xf8\x88\x80\x80\x80"},  // an encoded surrogate; 5-byte form
      {prefix + "a/\x01/b", ""},
  };
  auto watcher = client_->ListAndWatch(Context(), prefix, 8);
  WatchTracker tracker(watcher, prefix);
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));

  for (const auto& [key, value] : pairs) {
    auto created = client_->CreateOnly(Context(), key, value, true);
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_TRUE(*created);
  }
  for (const auto& [key, value] : pairs) EXPECT_EQ(ValueAt(*client_, key), value);
  auto listed = client_->ListPrefix(Context(), prefix);
  ASSERT_TRUE(listed.ok()) << listed.status();
  StringMap got;
  for (const auto& [key, value] : *listed) got[key] = value.data;
  EXPECT_EQ(got, pairs);
  EXPECT_TRUE(tracker.ReadUntilView(pairs, kTimeout));

  // An identical value is recognised as identical, bytes and all.
  for (const auto& [key, value] : pairs) {
    auto written = client_->UpdateIfDifferent(Context(), key, value, true);
    ASSERT_TRUE(written.ok()) << written.status();
    EXPECT_FALSE(*written);
  }
  // A value differing only after a NUL byte is different.
  const std::string first = pairs.begin()->first;
  auto written = client_->UpdateIfDifferent(Context(), first, std::string("\0\x01", 2), true);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_TRUE(*written);

  ASSERT_TRUE(client_->DeletePrefix(Context(), prefix).ok());
  EXPECT_TRUE(tracker.ReadUntilView({}, kTimeout));
  watcher->Stop();
}

TEST_F(InMemoryBadInputTest, PrefixesDoNotMatchSiblingsWithSharedBytes) {
  ASSERT_TRUE(client_->Update(Context(), "p\xff/a", "in", false).ok());
  ASSERT_TRUE(client_->Update(Context(), "p\xff\xff/a", "sibling", false).ok());
  ASSERT_TRUE(client_->Update(Context(), "p\xff", "the prefix without slash", false).ok());
  auto listed = client_->ListPrefix(Context(), "p\xff/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->begin()->first, "p\xff/a");

  ASSERT_TRUE(client_->DeletePrefix(Context(), "p\xff/").ok());
  EXPECT_EQ(ValueAt(*client_, "p\xff\xff/a"), "sibling");
  EXPECT_EQ(ValueAt(*client_, "p\xff"), "the prefix without slash");
}

}  // namespace
}  // namespace kvstore::memory
