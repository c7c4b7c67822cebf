// Golden round trips of each typed key (values in Cilium's exact encoding, parsed and written
// back byte-identical) and each of the checks Cilium's readers make.
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/cilium/cilium.h"

namespace kvstore::cilium {
namespace {

using ::testing::HasSubstr;

// Parses `value` at `key` into T and expects Marshal to give back the very bytes.
template <typename T>
T ExpectRoundTrip(std::string_view key, const std::string& value) {
  T parsed;
  absl::Status status = parsed.Unmarshal(key, value);
  EXPECT_TRUE(status.ok()) << status;
  absl::StatusOr<std::string> written = parsed.Marshal();
  EXPECT_TRUE(written.ok()) << written.status();
  if (written.ok()) {
    EXPECT_EQ(*written, value);
  }
  return parsed;
}

// Expects Unmarshal to fail with InvalidArgument naming the key and `field`.
template <typename T>
void ExpectRejected(std::string_view key, const std::string& value, std::string_view field) {
  T parsed;
  absl::Status status = parsed.Unmarshal(key, value);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status << "\n" << value;
  EXPECT_THAT(status.message(), HasSubstr(std::string(key))) << status;
  EXPECT_THAT(status.message(), HasSubstr(std::string(field))) << status;
}

// A node as Cilium 1.16-1.19 writes it.
const std::string kNodeJson =
    R"({"Name":"n1","Cluster":"c3","IPAddresses":[{"Type":"InternalIP","IP":"10.0.0.1"},)"
    R"({"Type":"CiliumInternalIP","IP":"10.244.0.5"},{"Type":"InternalIP","IP":"fd00::1"}],)"
    R"("IPv4AllocCIDR":{"IP":"10.244.0.0","Mask":"////AA=="},"IPv4SecondaryAllocCIDRs":null,)"
    R"("IPv6AllocCIDR":{"IP":"fd00:10:244::","Mask":"//////////////////8AAA=="},)"
    R"("IPv6SecondaryAllocCIDRs":[{"IP":"fd00:20::","Mask":"//////////8AAAAAAAAAAA=="}],)"
    R"("IPv4HealthIP":"10.244.0.7","IPv6HealthIP":"","IPv4IngressIP":"","IPv6IngressIP":"",)"
    R"("ClusterID":3,"Source":"kvstore","EncryptionKey":0,)"
    R"("Labels":{"kubernetes.io/hostname":"n1","topology.kubernetes.io/zone":"a\u003cb\u003e\u0026c"},)"
    R"("Annotations":null,"NodeIdentity":0,"WireguardPubKey":"",)"
    R"("BootID":"1d1c4a2e-4c5f-4b7e-9d0a-2f1e3d4c5b6a"})";

TEST(NodeTest, GoldenRoundTrip) {
  Node node = ExpectRoundTrip<Node>("c3/n1", kNodeJson);
  EXPECT_EQ(node.GetKeyName(), "c3/n1");
  EXPECT_EQ(node.cluster_id, 3u);
  ASSERT_TRUE(node.ip_addresses.has_value());
  ASSERT_EQ(node.ip_addresses->size(), 3u);
  EXPECT_EQ((*node.ip_addresses)[2], (NodeAddress{"InternalIP", "fd00::1"}));
  EXPECT_EQ(node.ipv4_alloc_cidr->ToString(), "10.244.0.0/24");
  EXPECT_EQ(node.labels->at("topology.kubernetes.io/zone"), "a<b>&c");
  EXPECT_FALSE(node.annotations.has_value());
}

TEST(NodeTest, BuiltNodeWritesCiliumsBytes) {
  Node node;
  node.name = "n1";
  node.cluster = "c3";
  node.ip_addresses = {
      {"InternalIP", "10.0.0.1"}, {"CiliumInternalIP", "10.244.0.5"}, {"InternalIP", "fd00:0::1"}};
  node.ipv4_alloc_cidr = *IPNet::Parse("10.244.0.0/24");
  node.ipv6_alloc_cidr = *IPNet::Parse("fd00:10:244::/112");
  node.ipv6_secondary_alloc_cidrs.emplace();
  node.ipv6_secondary_alloc_cidrs->push_back(*IPNet::Parse("fd00:20::/64"));
  node.ipv4_health_ip = "10.244.0.7";
  node.cluster_id = 3;
  node.source = "kvstore";
  node.labels = {{"kubernetes.io/hostname", "n1"}, {"topology.kubernetes.io/zone", "a<b>&c"}};
  node.boot_id = "1d1c4a2e-4c5f-4b7e-9d0a-2f1e3d4c5b6a";
  EXPECT_EQ(*node.Marshal(), kNodeJson);
}

TEST(NodeTest, KeepsTheEncodingOfNewerAgentsWithoutNodeIdentity) {
  const std::string json =
      R"({"Name":"n2","Cluster":"c3","IPAddresses":null,"IPv4AllocCIDR":null,)"
      R"("IPv4SecondaryAllocCIDRs":null,"IPv6AllocCIDR":null,"IPv6SecondaryAllocCIDRs":null,)"
      R"("IPv4HealthIP":"","IPv6HealthIP":"","IPv4IngressIP":"","IPv6IngressIP":"",)"
      R"("ClusterID":3,"Source":"custom-resource","EncryptionKey":7,"Labels":{},)"
      R"("Annotations":{"a":"b"},"WireguardPubKey":"k=","BootID":""})";
  Node node = ExpectRoundTrip<Node>("n2", json);
  EXPECT_FALSE(node.node_identity.has_value());
  EXPECT_TRUE(node.labels.has_value() && node.labels->empty());
}

TEST(NodeTest, IgnoresUnknownFieldsAndMatchesNamesCaseInsensitivelyAsGo) {
  Node node;
  ASSERT_TRUE(
      node.Unmarshal("c1/n1", R"({"name":"n1","CLUSTER":"c1","Future":{"x":[1,2]},"clusterid":1})")
          .ok());
  EXPECT_EQ(node.name, "n1");
  EXPECT_EQ(node.cluster, "c1");
  EXPECT_EQ(node.cluster_id, 1u);
  // Written back with Go's names, the unknown field gone: another encoding than the stored one.
  EXPECT_THAT(*node.Marshal(), HasSubstr(R"({"Name":"n1","Cluster":"c1",)"));
  EXPECT_THAT(*node.Marshal(), ::testing::Not(HasSubstr("Future")));
}

TEST(NodeTest, NormalizesIPsAsGoDoes) {
  Node node;
  ASSERT_TRUE(node.Unmarshal("c1/n1",
                             R"({"Name":"n1","Cluster":"c1","IPv4HealthIP":"::ffff:10.1.1.1",)"
                             R"("IPv6HealthIP":null})")
                  .ok());
  EXPECT_EQ(node.ipv4_health_ip, "10.1.1.1");
  EXPECT_EQ(node.ipv6_health_ip, "");
}

TEST(NodeTest, RejectsWhatCiliumRejects) {
  ExpectRejected<Node>("c1/n1", R"({"Cluster":"c1"})", "Name");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1"})", "Cluster");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","ClusterID":512})", "ClusterID");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","ClusterID":-1})", "ClusterID");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","ClusterID":1.5})", "ClusterID");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","EncryptionKey":256})",
                       "EncryptionKey");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","IPv4HealthIP":"10.0.0.300"})",
                       "IPv4HealthIP");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","IPAddresses":[{"IP":5}]})",
                       "IPAddresses[0].IP");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","IPv4AllocCIDR":{"Mask":"//8"}})",
                       "IPv4AllocCIDR.Mask");
  ExpectRejected<Node>("c1/n1", R"({"Name":"n1","Cluster":"c1","Labels":{"a":1}})", "Labels.a");
  ExpectRejected<Node>("c1/n1", R"({"Name":5,"Cluster":"c1"})", "Name");
  ExpectRejected<Node>("c1/n1", "[1]", "value");
  ExpectRejected<Node>("c1/n1", "{not json", "not JSON");
  // The key names another node.
  ExpectRejected<Node>("c1/n2", R"({"Name":"n1","Cluster":"c1"})", "Name");
  ExpectRejected<Node>("c2/n1", R"({"Name":"n1","Cluster":"c1"})", "Name");
}

TEST(NodeTest, RejectedValueLeavesTheNodeUnchanged) {
  Node node;
  ASSERT_TRUE(node.Unmarshal("c1/n1", R"({"Name":"n1","Cluster":"c1"})").ok());
  EXPECT_FALSE(node.Unmarshal("c1/n1", R"({"Name":"n1","Cluster":"c1","ClusterID":"x"})").ok());
  EXPECT_EQ(node.name, "n1");
}

TEST(NodeTest, ValidatingNodeChecksTheRemoteClustersNameAndID) {
  const ClusterInfo cluster{"c1", 1, 0};
  Validating<Node> node(cluster);
  EXPECT_TRUE(node.Unmarshal("n1", R"({"Name":"n1","Cluster":"c1","ClusterID":1})").ok());
  absl::Status wrong_id = node.Unmarshal("n1", R"({"Name":"n1","Cluster":"c1","ClusterID":2})");
  EXPECT_EQ(wrong_id.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_id.message(), HasSubstr("ClusterID"));
  absl::Status wrong_name =
      node.Unmarshal("c2/n1", R"({"Name":"n1","Cluster":"c2","ClusterID":1})");
  EXPECT_THAT(wrong_name.message(), HasSubstr("Cluster"));
  EXPECT_THAT(wrong_name.message(), HasSubstr("c2/n1"));
  // A cluster ID beyond the cluster's maxConnectedClusters.
  Validating<Node> big(ClusterInfo{"c1", 300, 0});
  EXPECT_FALSE(big.Unmarshal("n1", R"({"Name":"n1","Cluster":"c1","ClusterID":300})").ok());
  Validating<Node> big511(ClusterInfo{"c1", 300, 511});
  EXPECT_TRUE(big511.Unmarshal("n1", R"({"Name":"n1","Cluster":"c1","ClusterID":300})").ok());
  // The creator makes checking keys.
  std::unique_ptr<store::Key> created = ValidatingCreator<Node>(cluster)();
  EXPECT_FALSE(created->Unmarshal("n1", R"({"Name":"n1","Cluster":"c1","ClusterID":9})").ok());
}

TEST(IdentityTest, GoldenRoundTripOfIdKeys) {
  const std::string labels = "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;";
  Identity identity = ExpectRoundTrip<Identity>("id/196609", labels);
  EXPECT_EQ(identity.id, 196609u);
  EXPECT_EQ(identity.GetKeyName(), "id/196609");
  ASSERT_EQ(identity.labels.size(), 2u);
  // Relative to the id/ directory, or to a kvstoremesh cache directory.
  EXPECT_EQ(ExpectRoundTrip<Identity>("196609", labels).id, 196609u);
  EXPECT_EQ(ExpectRoundTrip<Identity>("c3/id/196609", labels).id, 196609u);
}

TEST(IdentityTest, RejectsBadIdsAndEmptyLabels) {
  ExpectRejected<Identity>("id/x", "k8s:a=b;", "ID");
  ExpectRejected<Identity>("id/0", "k8s:a=b;", "ID");
  ExpectRejected<Identity>("id/-1", "k8s:a=b;", "ID");
  ExpectRejected<Identity>("id/4294967296", "k8s:a=b;", "ID");
  ExpectRejected<Identity>("value/1", "k8s:a=b;", "ID");
  ExpectRejected<Identity>("id/5", "", "Labels");
  ExpectRejected<Identity>("id/5", ";", "Labels");
}

TEST(IdentityTest, ValueKeysSplitAtTheLastSlash) {
  IdentityValueKey value;
  const std::string key = "value/k8s:app.kubernetes.io/name=web;k8s:x=y;/10.0.0.1";
  ASSERT_TRUE(value.Unmarshal(key, "196609").ok());
  EXPECT_EQ(value.node, "10.0.0.1");
  EXPECT_EQ(value.id, 196609u);
  ASSERT_EQ(value.labels.size(), 2u);
  EXPECT_EQ(value.labels[0].key, "app.kubernetes.io/name");
  EXPECT_EQ(value.GetKeyName(), key);
  EXPECT_EQ(*value.Marshal(), "196609");
  ExpectRejected<IdentityValueKey>("value/k8s:a=b;/10.0.0.1", "x", "ID");
  ExpectRejected<IdentityValueKey>("value/k8s:a=b;", "5", "Node");
  ExpectRejected<IdentityValueKey>("id/5", "5", "value/");
}

TEST(IdentityTest, RangeOfTheRemoteCluster) {
  EXPECT_EQ(ClusterIdentityRange(3).min, 3u << 16);
  EXPECT_EQ(ClusterIdentityRange(3).max, (4u << 16) - 1);
  EXPECT_EQ(ClusterIdentityRange(3, 511).min, 3u << 15);
  EXPECT_EQ(ClusterIdentityRange(3, 511).max, (4u << 15) - 1);
  Validating<Identity> identity(ClusterInfo{"c3", 3, 0});
  EXPECT_TRUE(identity.Unmarshal("id/196608", "k8s:a=b;").ok());
  EXPECT_TRUE(identity.Unmarshal("id/262143", "k8s:a=b;").ok());
  absl::Status below = identity.Unmarshal("id/196607", "k8s:a=b;");
  EXPECT_EQ(below.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(below.message(), HasSubstr("id/196607"));
  EXPECT_FALSE(identity.Unmarshal("id/262144", "k8s:a=b;").ok());
  Validating<IdentityValueKey> value(ClusterInfo{"c3", 3, 511});
  EXPECT_TRUE(value.Unmarshal("value/k8s:a=b;/10.0.0.1", "98304").ok());
  EXPECT_FALSE(value.Unmarshal("value/k8s:a=b;/10.0.0.1", "196608").ok());
}

TEST(IPCacheTest, GoldenRoundTrip) {
  const std::string json =
      R"({"IP":"10.244.0.9","Mask":null,"HostIP":"192.168.1.10","ID":196609,"Key":3,)"
      R"("Metadata":"cilium-global:default:web-0:8f1c","K8sNamespace":"default",)"
      R"("K8sPodName":"web-0","K8sServiceAccount":"web",)"
      R"("NamedPorts":[{"Name":"dns","Port":53,"Protocol":"UDP"},)"
      R"({"Name":"http","Port":80,"Protocol":"TCP"}]})";
  IPCacheEntry entry = ExpectRoundTrip<IPCacheEntry>("default/10.244.0.9", json);
  EXPECT_EQ(entry.GetKeyName(), "10.244.0.9");
  EXPECT_EQ(entry.named_ports.size(), 2u);
  // omitempty fields left out.
  ExpectRoundTrip<IPCacheEntry>(
      "fd00::5", R"({"IP":"fd00::5","Mask":null,"HostIP":"","ID":6,"Key":0,"Metadata":""})");
}

TEST(IPCacheTest, MaskedEntriesAreKeyedByPrefix) {
  const std::string json =
      R"({"IP":"10.1.0.0","Mask":"//8AAA==","HostIP":"","ID":16777217,"Key":0,"Metadata":""})";
  IPCacheEntry entry = ExpectRoundTrip<IPCacheEntry>("10.1.0.0/16", json);
  EXPECT_EQ(entry.GetKeyName(), "10.1.0.0/16");
  ExpectRejected<IPCacheEntry>("10.1.0.0", json, "IP");
}

TEST(IPCacheTest, RejectsWhatCiliumRejects) {
  ExpectRejected<IPCacheEntry>("10.0.0.1", R"({"HostIP":"1.1.1.1"})", "IP");
  ExpectRejected<IPCacheEntry>("10.0.0.2", R"({"IP":"10.0.0.1"})", "IP");
  ExpectRejected<IPCacheEntry>("10.0.0.1", R"({"IP":"10.0.0.1","ID":4294967296})", "ID");
  ExpectRejected<IPCacheEntry>("10.0.0.1", R"({"IP":"10.0.0.1","Mask":"***"})", "Mask");
  ExpectRejected<IPCacheEntry>("10.0.0.1", R"({"IP":"10.0.0.1","NamedPorts":[{"Port":70000}]})",
                               "NamedPorts[0].Port");
}

TEST(IPCacheTest, RemoteEntriesHaveReservedOrTheClustersIdentities) {
  Validating<IPCacheEntry> entry(ClusterInfo{"c3", 3, 0});
  EXPECT_TRUE(entry.Unmarshal("10.0.0.1", R"({"IP":"10.0.0.1","ID":6})").ok());
  EXPECT_TRUE(entry.Unmarshal("10.0.0.1", R"({"IP":"10.0.0.1","ID":196700})").ok());
  absl::Status other = entry.Unmarshal("10.0.0.1", R"({"IP":"10.0.0.1","ID":65600})");
  EXPECT_EQ(other.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.message(), HasSubstr("ID"));
}

const std::string kServiceJson =
    R"({"cluster":"c3","namespace":"default","name":"web",)"
    R"("frontends":{"10.96.0.10":{"http":{"Protocol":"TCP","Port":80}}},)"
    R"("backends":{"10.244.0.9":{"http":{"Protocol":"TCP","Port":8080}},)"
    R"("fd00::9":{"http":{"Protocol":"TCP","Port":8080}}},)"
    R"("hostnames":{"10.244.0.9":"web-0"},)"
    R"("zones":{"10.244.0.9":{"zone":"a","forZones":[{"name":"a"},{"name":"b"}]}},)"
    R"("labels":{"app":"web"},"selector":{"app":"web"},"includeExternal":false,)"
    R"("shared":true,"clusterID":3})";

TEST(ClusterServiceTest, GoldenRoundTrip) {
  ClusterService svc = ExpectRoundTrip<ClusterService>("c3/default/web", kServiceJson);
  EXPECT_EQ(svc.GetKeyName(), "c3/default/web");
  EXPECT_EQ(svc.backends->at("fd00::9").at("http"), (L4Addr{"TCP", 8080}));
  EXPECT_EQ(svc.zones.at("10.244.0.9").for_zones->size(), 2u);
  // Relative to the cluster's directory, as Cilium's readers see it.
  ExpectRoundTrip<ClusterService>("default/web", kServiceJson);
}

TEST(ClusterServiceTest, EmptyMapsAsCiliumWritesThem) {
  ClusterService svc;
  svc.cluster = "c1";
  svc.k8s_namespace = "ns";
  svc.name = "s";
  svc.cluster_id = 1;
  const std::string json =
      R"({"cluster":"c1","namespace":"ns","name":"s","frontends":{},"backends":{},)"
      R"("labels":{},"selector":{},"includeExternal":false,"shared":false,"clusterID":1})";
  EXPECT_EQ(*svc.Marshal(), json);
  ExpectRoundTrip<ClusterService>("c1/ns/s", json);
  // A nil map stays null.
  ExpectRoundTrip<ClusterService>(
      "c1/ns/s",
      R"({"cluster":"c1","namespace":"ns","name":"s","frontends":null,"backends":{},)"
      R"("labels":null,"selector":{},"includeExternal":true,"shared":false,"clusterID":1})");
}

TEST(ClusterServiceTest, KeepsTheEncodingOfAgentsBefore119) {
  // Before zones (1.19), "hostnames" was written even when empty.
  const std::string json =
      R"({"cluster":"c1","namespace":"ns","name":"s","frontends":{},"backends":{},)"
      R"("hostnames":{},"labels":{},"selector":{},"includeExternal":false,"shared":true,)"
      R"("clusterID":1})";
  ClusterService svc = ExpectRoundTrip<ClusterService>("c1/ns/s", json);
  EXPECT_TRUE(svc.write_empty_hostnames);
}

TEST(ClusterServiceTest, RejectsWhatCiliumRejects) {
  ExpectRejected<ClusterService>("c1/ns/s", R"({"namespace":"ns","name":"s"})", "cluster");
  ExpectRejected<ClusterService>("c1/ns/s", R"({"cluster":"c1","name":"s"})", "namespace");
  ExpectRejected<ClusterService>("c1/ns/s", R"({"cluster":"c1","namespace":"ns"})", "name");
  ExpectRejected<ClusterService>(
      "c1/ns/s", R"({"cluster":"c1","namespace":"ns","name":"s","clusterID":600})", "clusterID");
  ExpectRejected<ClusterService>(
      "c1/ns/s", R"({"cluster":"c1","namespace":"ns","name":"s","frontends":{"invalid":{}}})",
      "frontends");
  ExpectRejected<ClusterService>(
      "c1/ns/s", R"({"cluster":"c1","namespace":"ns","name":"s","backends":{"dcba::1%zone":{}}})",
      "backends");
  ExpectRejected<ClusterService>("other/s", R"({"cluster":"c1","namespace":"ns","name":"s"})",
                                 "name");
  ExpectRejected<ClusterService>(
      "c1/ns/s",
      R"({"cluster":"c1","namespace":"ns","name":"s","backends":{"1.1.1.1":{"p":{"Port":"x"}}}})",
      "backends.1.1.1.1.p.Port");
}

TEST(ClusterServiceTest, RemoteServicesCarryTheClustersNameAndID) {
  Validating<ClusterService> svc(ClusterInfo{"c3", 3, 0});
  EXPECT_TRUE(svc.Unmarshal("default/web", kServiceJson).ok());
  Validating<ClusterService> other_id(ClusterInfo{"c3", 4, 0});
  EXPECT_THAT(other_id.Unmarshal("default/web", kServiceJson).message(), HasSubstr("clusterID"));
  Validating<ClusterService> other_name(ClusterInfo{"c4", 3, 0});
  EXPECT_THAT(other_name.Unmarshal("default/web", kServiceJson).message(), HasSubstr("cluster"));
}

const std::string kExportJson =
    R"({"cluster":"c3","name":"web","namespace":"default","annotations":{"a":"1"},)"
    R"("labels":{"l":"2"},"Labels":{"l":"2"},"Annotations":{"a":"1"},)"
    R"("exportCreationTimestamp":"2025-01-02T03:04:05Z",)"
    R"("ports":[{"name":"http","protocol":"TCP","appProtocol":"http","port":80},{"port":53}],)"
    R"("type":"ClusterSetIP","sessionAffinity":"ClientIP",)"
    R"("sessionAffinityConfig":{"clientIP":{"timeoutSeconds":10800}},)"
    R"("ipFamilies":["IPv4","IPv6"],"internalTrafficPolicy":"Local",)"
    R"("trafficDistribution":"PreferClose"})";

TEST(ServiceExportTest, GoldenRoundTrip) {
  ServiceExport spec = ExpectRoundTrip<ServiceExport>("c3/default/web", kExportJson);
  EXPECT_EQ(spec.export_creation_timestamp, "2025-01-02T03:04:05Z");
  EXPECT_EQ(spec.session_affinity_config->client_ip->timeout_seconds, 10800);
  const std::string minimal =
      R"({"cluster":"c3","name":"web","namespace":"default",)"
      R"("exportCreationTimestamp":"2025-01-02T03:04:05Z","ports":null,"type":"Headless",)"
      R"("sessionAffinity":"None"})";
  ExpectRoundTrip<ServiceExport>("default/web", minimal);
}

TEST(ServiceExportTest, ReadsLegacyLabelsAndTimesInOtherZones) {
  ServiceExport spec;
  ASSERT_TRUE(spec.Unmarshal("c3/default/web",
                             R"({"cluster":"c3","name":"web","namespace":"default",)"
                             R"("Labels":{"l":"x"},)"
                             R"("exportCreationTimestamp":"2025-01-02T05:04:05.5+02:00",)"
                             R"("type":"Headless","sessionAffinity":"None"})")
                  .ok());
  EXPECT_EQ(spec.labels.at("l"), "x");
  EXPECT_EQ(spec.export_creation_timestamp, "2025-01-02T03:04:05Z");
}

TEST(ServiceExportTest, RejectsWhatCiliumRejects) {
  const std::string head = R"({"cluster":"c3","name":"web","namespace":"default",)";
  const std::string time = R"("exportCreationTimestamp":"2025-01-02T03:04:05Z",)";
  ExpectRejected<ServiceExport>("c3/default/web",
                                head + R"("type":"Headless","sessionAffinity":"None"})",
                                "exportCreationTimestamp");
  ExpectRejected<ServiceExport>(
      "c3/default/web", head + time + R"("type":"LoadBalancer","sessionAffinity":"None"})", "type");
  ExpectRejected<ServiceExport>("c3/default/web",
                                head + time + R"("type":"Headless","sessionAffinity":"Sticky"})",
                                "sessionAffinity");
  ExpectRejected<ServiceExport>(
      "c3/default/web",
      head + time +
          R"("type":"Headless","sessionAffinity":"None","internalTrafficPolicy":"Nowhere"})",
      "internalTrafficPolicy");
  ExpectRejected<ServiceExport>(
      "c3/default/web",
      head + time + R"("type":"Headless","sessionAffinity":"None","trafficDistribution":"Far"})",
      "trafficDistribution");
  ExpectRejected<ServiceExport>(
      "c3/default/web",
      head + R"("exportCreationTimestamp":"yesterday","type":"Headless","sessionAffinity":"None"})",
      "exportCreationTimestamp");
  ExpectRejected<ServiceExport>("c3/default/web", R"({"name":"web","namespace":"default"})",
                                "cluster");
  ExpectRejected<ServiceExport>(
      "c3/other/web", head + time + R"("type":"Headless","sessionAffinity":"None"})", "name");
  Validating<ServiceExport> remote(ClusterInfo{"c4", 4, 0});
  EXPECT_THAT(remote.Unmarshal("default/web", kExportJson).message(), HasSubstr("cluster"));
}

// testdata/go_encoding.txt holds values as Go's encoding/json writes them (gocheck.sh checks the
// file against Go itself): each parses and marshals back byte-identical.
TEST(GoEncodingTest, EveryValueGoWroteRoundTrips) {
  std::ifstream file(KVSTORE_CILIUM_TESTDATA "/go_encoding.txt");
  ASSERT_TRUE(file.is_open());
  int values = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << line;
    const std::string kind = line.substr(0, space), json = line.substr(space + 1);
    SCOPED_TRACE(line);
    if (kind == "node") {
      ExpectRoundTrip<Node>("", json);
    } else if (kind == "ipcache") {
      ExpectRoundTrip<IPCacheEntry>("", json);
    } else if (kind == "service") {
      ExpectRoundTrip<ClusterService>("", json);
    } else if (kind == "export") {
      ExpectRoundTrip<ServiceExport>("", json);
    } else {
      ADD_FAILURE() << "unknown kind " << kind;
    }
    ++values;
  }
  EXPECT_EQ(values, 9);
}

}  // namespace
}  // namespace kvstore::cilium
