#include "kvstore/store/key.h"

#include <memory>

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

}  // namespace
}  // namespace kvstore::store
