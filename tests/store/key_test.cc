#include "kvstore/store/key.h"

#include <memory>
#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace kvstore::store {
namespace {

TEST(KVPairTest, NameAndMarshalAreKeyAndValue) {
  KVPair pair("key1", "value1");
  EXPECT_EQ(pair.GetKeyName(), "key1");
  absl::StatusOr<std::string> value = pair.Marshal();
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, "value1");
}

TEST(KVPairTest, UnmarshalReplacesKeyAndValue) {
  KVPair pair("old", "old-value");
  ASSERT_TRUE(pair.Unmarshal("key2", std::string_view("a\0b", 3)).ok());
  EXPECT_EQ(pair, KVPair("key2", std::string("a\0b", 3)));
}

TEST(KVPairTest, DeepKeyCopyIsIndependent) {
  KVPair pair("key1", "value1");
  std::unique_ptr<LocalKey> copy = pair.DeepKeyCopy();
  pair.value = "changed";
  EXPECT_EQ(copy->GetKeyName(), "key1");
  EXPECT_EQ(*copy->Marshal(), "value1");
}

TEST(KVPairTest, CreatorMakesEmptyPairs) {
  std::unique_ptr<Key> key = KVPairCreator();
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->GetKeyName(), "");
  ASSERT_TRUE(key->Unmarshal("key3", "value3").ok());
  EXPECT_EQ(*dynamic_cast<KVPair*>(key.get()), KVPair("key3", "value3"));
}

TEST(KVPairTest, UnmarshalOwnedTakesTheValueItIsGiven) {
  std::string value(256, 'v');
  const char* bytes = value.data();
  KVPair pair;
  ASSERT_TRUE(pair.UnmarshalOwned("name", std::move(value)).ok());
  EXPECT_EQ(pair.key, "name");
  EXPECT_EQ(pair.value, std::string(256, 'v'));
  EXPECT_EQ(pair.value.data(), bytes) << "copied instead of taken";
}

// A key that only implements SPEC's Unmarshal gets the owned value through it.
class ParsedKey final : public Key {
 public:
  std::string GetKeyName() const override { return name; }
  absl::StatusOr<std::string> Marshal() const override { return std::to_string(number); }
  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    name = std::string(key);
    number = static_cast<int>(data.size());
    return absl::OkStatus();
  }
  std::string name;
  int number = 0;
};

TEST(KeyTest, UnmarshalOwnedDefaultsToUnmarshal) {
  ParsedKey key;
  Key& base = key;
  ASSERT_TRUE(base.UnmarshalOwned("n", std::string("12345")).ok());
  EXPECT_EQ(key.name, "n");
  EXPECT_EQ(key.number, 5);
}

}  // namespace
}  // namespace kvstore::store
