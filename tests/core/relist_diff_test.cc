// The shared view of what a watcher was told, and the difference of a re-list against it.
#include "core/relist_diff.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace kvstore::internal {
namespace {

KeyValueEvent Event(EventType type, std::string key, std::string value, int64_t revision) {
  return KeyValueEvent{type, std::move(key), std::move(value), revision};
}

// Takes every event (or refuses once `room` is used up) and records them with their revision.
class Consumer {
 public:
  explicit Consumer(size_t room = SIZE_MAX) : room_(room) {}
  bool Take(KeyValueEvent& event) {
    if (room_ == 0) return false;
    --room_;
    events_.push_back(std::move(event));
    return true;
  }
  // A reference to this consumer's function (an EmitFn does not own what it calls).
  EmitFn Emit() { return emit_; }
  void AddRoom(size_t room) { room_ += room; }
  const std::vector<KeyValueEvent>& events() const { return events_; }

 private:
  size_t room_;
  std::vector<KeyValueEvent> events_;
  const std::function<bool(KeyValueEvent&)> emit_ = [this](KeyValueEvent& event) {
    return Take(event);
  };
};

void ExpectEvents(const std::vector<KeyValueEvent>& got, const std::vector<KeyValueEvent>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << i << ": " << EventTypeName(got[i].type) << " " << got[i].key;
    EXPECT_EQ(got[i].revision, want[i].revision) << i;
  }
}

TEST(KnownKeysTest, LiveChangesCreateModifyAndDeleteWithTheLastValue) {
  KnownKeys known("p/");
  Consumer consumer;
  ASSERT_TRUE(known.ApplyPut("p/a", 2, std::string_view("1"), consumer.Emit()));
  ASSERT_TRUE(known.ApplyPut("p/a", 3, std::make_shared<const std::string>("2"), consumer.Emit()));
  ASSERT_TRUE(known.ApplyDelete("p/a", 4, consumer.Emit()));
  ASSERT_TRUE(known.ApplyDelete("p/never-told", 5, consumer.Emit()));  // nothing to take back
  ExpectEvents(consumer.events(),
               {Event(EventType::kCreate, "p/a", "1", 2), Event(EventType::kModify, "p/a", "2", 3),
                Event(EventType::kDelete, "p/a", "2", 4)});
  EXPECT_TRUE(known.empty());
}

TEST(KnownKeysTest, RefusedEventChangesNothing) {
  KnownKeys known("p/");
  Consumer full(0);
  EXPECT_FALSE(known.ApplyPut("p/a", 2, std::string_view("1"), full.Emit()));
  EXPECT_EQ(known.Find("p/a"), nullptr);
  Consumer consumer;
  ASSERT_TRUE(known.ApplyPut("p/a", 2, std::string_view("1"), consumer.Emit()));
  EXPECT_FALSE(known.ApplyDelete("p/a", 3, full.Emit()));
  ASSERT_NE(known.Find("p/a"), nullptr);
  EXPECT_EQ(known.Find("p/a")->mod_revision, 2);
  EXPECT_EQ(*known.Find("p/a")->value, "1");
}

TEST(KnownKeysTest, WithoutValuesDeletesComeWithoutTheValue) {
  KnownKeys known("p/", /*keep_values=*/false);
  Consumer consumer;
  ASSERT_TRUE(known.ApplyPut("p/a", 2, std::string_view("1"), consumer.Emit()));
  ASSERT_TRUE(known.ApplyPut("p/a", 3, std::string_view("2"), consumer.Emit()));
  ASSERT_NE(known.Find("p/a"), nullptr);
  EXPECT_EQ(known.Find("p/a")->value, nullptr);
  ASSERT_TRUE(known.ApplyDelete("p/a", 4, consumer.Emit()));
  ExpectEvents(consumer.events(),
               {Event(EventType::kCreate, "p/a", "1", 2), Event(EventType::kModify, "p/a", "2", 3),
                Event(EventType::kDelete, "p/a", "", 4)});
  // A re-list still tells modified from unchanged keys by their mod revision.
  Consumer relisted;
  ASSERT_TRUE(known.ApplyPut("p/b", 5, std::string_view("x"), consumer.Emit()));
  RelistDiff diff(known, 7);
  ASSERT_TRUE(diff.Listed("p/b", 5, std::string_view("x"), relisted.Emit()));
  ASSERT_TRUE(diff.Listed("p/c", 6, std::string_view("y"), relisted.Emit()));
  ASSERT_TRUE(diff.Finish(relisted.Emit()));
  ExpectEvents(relisted.events(), {Event(EventType::kCreate, "p/c", "y", 6)});
}

TEST(RelistDiffTest, FirstListingIsACreatePerKey) {
  KnownKeys known("p/");
  Consumer consumer;
  RelistDiff diff(known, 7);
  ASSERT_TRUE(diff.Listed("p/a", 3, std::string_view("1"), consumer.Emit()));
  ASSERT_TRUE(diff.Listed("p/b", 5, std::string_view("2"), consumer.Emit()));
  ASSERT_TRUE(diff.Finish(consumer.Emit()));
  ExpectEvents(consumer.events(), {Event(EventType::kCreate, "p/a", "1", 3),
                                   Event(EventType::kCreate, "p/b", "2", 5)});
  EXPECT_EQ(known.size(), 2u);
}

// The known view a, b, c, e, g against the listing a (same), b (changed), d (new), e (same),
// f (new): c and g vanished.
class RelistDiffOrderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Consumer consumer;
    for (auto [key, revision] : std::vector<std::pair<std::string, int64_t>>{
             {"p/a", 2}, {"p/b", 3}, {"p/c", 4}, {"p/e", 5}, {"p/g", 6}}) {
      ASSERT_TRUE(known_.ApplyPut(key, revision, std::string_view("old-" + key), consumer.Emit()));
    }
  }
  struct Listed {
    std::string key;
    int64_t mod_revision;
    std::string value;
  };
  const std::vector<Listed> listing_ = {{"p/a", 2, "old-p/a"},
                                        {"p/b", 8, "new-b"},
                                        {"p/d", 9, "new-d"},
                                        {"p/e", 5, "old-p/e"},
                                        {"p/f", 10, "new-f"}};
  const std::vector<KeyValueEvent> expected_ = {
      Event(EventType::kModify, "p/b", "new-b", 8), Event(EventType::kDelete, "p/c", "old-p/c", 11),
      Event(EventType::kCreate, "p/d", "new-d", 9), Event(EventType::kCreate, "p/f", "new-f", 10),
      Event(EventType::kDelete, "p/g", "old-p/g", 11)};
  KnownKeys known_{"p/"};
};

TEST_F(RelistDiffOrderTest, EmitsTheDifferenceInKeyOrder) {
  Consumer consumer;
  RelistDiff diff(known_, 11);
  for (const Listed& kv : listing_) {
    ASSERT_TRUE(diff.Listed(kv.key, kv.mod_revision, std::string_view(kv.value), consumer.Emit()));
  }
  ASSERT_TRUE(diff.Finish(consumer.Emit()));
  ExpectEvents(consumer.events(), expected_);
  // The view now is the listing.
  EXPECT_EQ(known_.size(), listing_.size());
  for (const Listed& kv : listing_) {
    ASSERT_NE(known_.Find(kv.key), nullptr) << kv.key;
    EXPECT_EQ(known_.Find(kv.key)->mod_revision, kv.mod_revision);
    EXPECT_EQ(*known_.Find(kv.key)->value, kv.value);
  }
}

TEST_F(RelistDiffOrderTest, RefusalsResumeWhereTheyStoppedWithoutDuplicates) {
  // A consumer with room for one event at a time: every call that refuses is repeated.
  Consumer consumer(0);
  RelistDiff diff(known_, 11);
  int refusals = 0;
  for (const Listed& kv : listing_) {
    while (!diff.Listed(kv.key, kv.mod_revision, std::string_view(kv.value), consumer.Emit())) {
      ++refusals;
      consumer.AddRoom(1);
    }
  }
  while (!diff.Finish(consumer.Emit())) {
    ++refusals;
    consumer.AddRoom(1);
  }
  ExpectEvents(consumer.events(), expected_);
  EXPECT_EQ(refusals, static_cast<int>(expected_.size()));
}

TEST_F(RelistDiffOrderTest, SharedValuesAreKeptAsGiven) {
  Consumer consumer;
  RelistDiff diff(known_, 11);
  auto value = std::make_shared<const std::string>("shared");
  ASSERT_TRUE(diff.Listed("p/z", 12, value, consumer.Emit()));
  EXPECT_EQ(known_.Find("p/z")->value, value) << "not copied";
}

TEST(KnownKeysTest, OwnedValuesMoveIntoTheEventUnlessKeptAndStayWhenRefused) {
  KnownKeys without_values("p/", /*keep_values=*/false);
  Consumer full(0);
  std::string value(100, 'v');  // beyond the short-string buffer: its heap storage moves
  const char* const storage = value.data();
  EXPECT_FALSE(without_values.ApplyPut("p/a", 2, std::move(value), full.Emit()));
  EXPECT_EQ(value, std::string(100, 'v')) << "a refused event leaves the value as it was";
  EXPECT_EQ(without_values.Find("p/a"), nullptr);
  Consumer consumer;
  ASSERT_TRUE(without_values.ApplyPut("p/a", 2, std::move(value), consumer.Emit()));
  ASSERT_EQ(consumer.events().size(), 1u);
  EXPECT_EQ(consumer.events()[0].value.data(), storage) << "moved, not copied";
  EXPECT_EQ(without_values.Find("p/a")->mod_revision, 2);

  // Values that are kept are copied: the event and the record each have one.
  KnownKeys with_values("p/");
  std::string kept = "1";
  ASSERT_TRUE(with_values.ApplyPut("p/b", 3, std::move(kept), consumer.Emit()));
  EXPECT_EQ(kept, "1");
  EXPECT_EQ(*with_values.Find("p/b")->value, "1");
  EXPECT_EQ(consumer.events().back().value, "1");
}

TEST(RelistDiffTest, ListedOwnedValuesMoveUnlessKeptAndStayWhenRefused) {
  KnownKeys known("p/", /*keep_values=*/false);
  Consumer consumer(1);
  {
    RelistDiff diff(known, 10);
    std::string a(100, 'a'), b(100, 'b');
    const char* const storage = a.data();
    ASSERT_TRUE(diff.Listed("p/a", 5, std::move(a), consumer.Emit()));
    EXPECT_EQ(consumer.events()[0].value.data(), storage) << "moved, not copied";
    EXPECT_FALSE(diff.Listed("p/b", 6, std::move(b), consumer.Emit()));
    EXPECT_EQ(b, std::string(100, 'b')) << "a refused event leaves the value as it was";
    consumer.AddRoom(1);
    ASSERT_TRUE(diff.Listed("p/b", 6, std::move(b), consumer.Emit()));
    ASSERT_TRUE(diff.Finish(consumer.Emit()));
  }
  ExpectEvents(consumer.events(), {Event(EventType::kCreate, "p/a", std::string(100, 'a'), 5),
                                   Event(EventType::kCreate, "p/b", std::string(100, 'b'), 6)});
  EXPECT_EQ(known.size(), 2u);
}

TEST(RelistDiffTest, EmptyListingDeletesEverything) {
  KnownKeys known("");
  Consumer consumer;
  ASSERT_TRUE(known.ApplyPut("a", 2, std::string_view("1"), consumer.Emit()));
  ASSERT_TRUE(known.ApplyPut("b", 3, std::string_view("2"), consumer.Emit()));
  Consumer after;
  RelistDiff diff(known, 9);
  ASSERT_TRUE(diff.Finish(after.Emit()));
  ExpectEvents(after.events(),
               {Event(EventType::kDelete, "a", "1", 9), Event(EventType::kDelete, "b", "2", 9)});
  EXPECT_TRUE(known.empty());
}

}  // namespace
}  // namespace kvstore::internal
