// The Go-compatible JSON writer, IP text forms and labels strings.
#include <string>

#include "cilium/go_json.h"
#include "gtest/gtest.h"
#include "kvstore/cilium/labels.h"
#include "kvstore/cilium/net.h"

namespace kvstore::cilium {
namespace {

std::string GoString(std::string_view s) {
  std::string out;
  internal::AppendGoString(out, s);
  return out;
}

TEST(GoJsonTest, EscapesHtmlCharactersAsGoDoes) {
  EXPECT_EQ(GoString("a<b>&c"), R"("a\u003cb\u003e\u0026c")");
}

TEST(GoJsonTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(GoString("\"\\\b\f\n\r\t"), R"("\"\\\b\f\n\r\t")");
  EXPECT_EQ(GoString(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(GoString(std::string("a\0b", 3)), R"("a\u0000b")");
}

TEST(GoJsonTest, KeepsValidUtf8AndEscapesLineSeparators) {
  EXPECT_EQ(GoString("z\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
            "\"z\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  EXPECT_EQ(GoString("\xe2\x80\xa8\xe2\x80\xa9"), R"("\u2028\u2029")");
}

TEST(GoJsonTest, ReplacesInvalidUtf8ByteByByte) {
  EXPECT_EQ(GoString("a\xff"
                     "b"),
            R"("a\ufffdb")");
  // An overlong form and a surrogate are invalid in Go too: one \ufffd per byte.
  EXPECT_EQ(GoString("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(GoString("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  // A truncated sequence at the end.
  EXPECT_EQ(GoString("\xe2\x82"), R"("\ufffd\ufffd")");
}

TEST(GoJsonTest, WritesCompactObjectsArraysAndBase64) {
  internal::GoJsonWriter w;
  w.BeginObject();
  w.Key("a");
  w.BeginArray();
  w.Uint(1);
  w.Int(-2);
  w.Bool(true);
  w.Null();
  w.EndArray();
  w.Key("m");
  w.Bytes(std::string("\xff\xff\xff\x00", 4));
  w.Key("e");
  w.StringMap(std::map<std::string, std::string>{});
  w.Key("n");
  w.StringMap(std::nullopt);
  w.EndObject();
  EXPECT_EQ(w.out(), R"({"a":[1,-2,true,null],"m":"////AA==","e":{},"n":null})");
}

TEST(CanonicalIPTest, WritesGoForms) {
  EXPECT_EQ(*CanonicalIP("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(*CanonicalIP("::ffff:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(*CanonicalIP("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  EXPECT_EQ(*CanonicalIP("2001:db8:0:0:0:0:2:1"), "2001:db8::2:1");
  EXPECT_EQ(*CanonicalIP("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  EXPECT_EQ(*CanonicalIP("0:0:0:0:0:0:0:0"), "::");
  EXPECT_EQ(*CanonicalIP("::1"), "::1");
  EXPECT_EQ(*CanonicalIP("::1.2.3.4"), "::102:304");
  EXPECT_EQ(*CanonicalIP("fd00:0:0:1::"), "fd00:0:0:1::");
}

TEST(CanonicalIPTest, RejectsWhatGoRejects) {
  for (const char* bad :
       {"", "1.2.3", "1.2.3.04", "256.0.0.1", "fe80::1%eth0", "10.0.0.0/8", " 10.0.0.1", "x"}) {
    EXPECT_FALSE(CanonicalIP(bad).ok()) << bad;
  }
}

TEST(IPNetTest, ParsesNetworksAsGo) {
  absl::StatusOr<IPNet> v4 = IPNet::Parse("10.244.1.7/24");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->ip, "10.244.1.0");
  EXPECT_EQ(*v4->mask, std::string("\xff\xff\xff\x00", 4));
  EXPECT_EQ(v4->ToString(), "10.244.1.0/24");
  absl::StatusOr<IPNet> v6 = IPNet::Parse("fd00:10:244::1/112");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->ip, "fd00:10:244::");
  EXPECT_EQ(v6->mask->size(), 16u);
  EXPECT_EQ(v6->ToString(), "fd00:10:244::/112");
  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/08", "x/8"}) {
    EXPECT_FALSE(IPNet::Parse(bad).ok()) << bad;
  }
}

TEST(MaskOnesTest, CountsOnlyCanonicalMasks) {
  EXPECT_EQ(MaskOnes(std::string("\xff\xff\xff\x00", 4)), 24);
  EXPECT_EQ(MaskOnes(std::string("\xff\xff\xff\xff", 4)), 32);
  EXPECT_EQ(MaskOnes(std::string(4, '\0')), 0);
  EXPECT_EQ(MaskOnes(std::string("\xff\x00\xff\x00", 4)), std::nullopt);
  EXPECT_EQ(MaskOnes("abc"), std::nullopt);
  EXPECT_EQ(CIDRMask(20, 32), std::string("\xff\xff\xf0\x00", 4));
}

TEST(LabelsTest, ParsesCiliumShortForms) {
  EXPECT_EQ(ParseLabel("k8s:app=web"), (Label{"k8s", "app", "web"}));
  EXPECT_EQ(ParseLabel("$host"), (Label{"reserved", "host", ""}));
  EXPECT_EQ(ParseLabel("reserved:=world"), (Label{"reserved", "world", ""}));
  EXPECT_EQ(ParseLabel("app=web"), (Label{"unspec", "app", "web"}));
  EXPECT_EQ(ParseLabel("reserved.health"), (Label{"reserved", "health", ""}));
  // The source ends at the first ':', the key at the first '=' after it.
  EXPECT_EQ(ParseLabel("k8s:a=b=c:d"), (Label{"k8s", "a", "b=c:d"}));
  EXPECT_EQ(ParseLabel("cidr:fd00--/64"), (Label{"cidr", "fd00--/64", ""}));
}

TEST(LabelsTest, FormatsSortedByKeyWithTrailingSemicolon) {
  const std::vector<Label> labels = {{"k8s", "io.kubernetes.pod.namespace", "default"},
                                     {"k8s", "app", "web"},
                                     {"reserved", "host", ""}};
  EXPECT_EQ(FormatLabels(labels),
            "k8s:app=web;reserved:host=;k8s:io.kubernetes.pod.namespace=default;");
}

TEST(LabelsTest, ParsesLabelsStringsSkippingEmptyParts) {
  const std::string text = "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;";
  const std::vector<Label> labels = ParseLabels(text);
  ASSERT_EQ(labels.size(), 2u);
  EXPECT_EQ(labels[0], (Label{"k8s", "app", "web"}));
  EXPECT_EQ(labels[1], (Label{"k8s", "io.kubernetes.pod.namespace", "default"}));
  EXPECT_EQ(FormatLabels(labels), text);
  EXPECT_TRUE(ParseLabels(";;").empty());
}

}  // namespace
}  // namespace kvstore::cilium
