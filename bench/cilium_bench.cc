// Parse (Unmarshal) and marshal speed of Cilium's typed keys, per object, against the JSON
// library underneath: nlohmann::ordered_json (what Unmarshal uses, keeping member order as Go's
// decoder sees it) and nlohmann::json parse and dump of the same bytes.
#include <benchmark/benchmark.h>

#include <string>

#include "kvstore/cilium/cilium.h"
#include "nlohmann/json.hpp"

namespace kvstore::cilium {
namespace {

const std::string kNode =
    R"({"Name":"node-0001","Cluster":"cluster-3","IPAddresses":[{"Type":"InternalIP","IP":"10.0.0.1"},)"
    R"({"Type":"CiliumInternalIP","IP":"10.244.0.5"},{"Type":"InternalIP","IP":"fd00::1"}],)"
    R"("IPv4AllocCIDR":{"IP":"10.244.0.0","Mask":"////AA=="},"IPv4SecondaryAllocCIDRs":null,)"
    R"("IPv6AllocCIDR":{"IP":"fd00:10:244::","Mask":"//////////////////8AAA=="},)"
    R"("IPv6SecondaryAllocCIDRs":null,"IPv4HealthIP":"10.244.0.7","IPv6HealthIP":"fd00:10:244::7",)"
    R"("IPv4IngressIP":"","IPv6IngressIP":"","ClusterID":3,"Source":"kvstore","EncryptionKey":0,)"
    R"("Labels":{"kubernetes.io/arch":"amd64","kubernetes.io/hostname":"node-0001",)"
    R"("kubernetes.io/os":"linux","topology.kubernetes.io/zone":"zone-a"},"Annotations":null,)"
    R"("NodeIdentity":0,"WireguardPubKey":"","BootID":"1d1c4a2e-4c5f-4b7e-9d0a-2f1e3d4c5b6a"})";

const std::string kIPCache =
    R"({"IP":"10.244.0.9","Mask":null,"HostIP":"192.168.1.10","ID":196609,"Key":3,)"
    R"("Metadata":"cilium-global:default:web-0:8f1c","K8sNamespace":"default",)"
    R"("K8sPodName":"web-0","NamedPorts":[{"Name":"http","Port":80,"Protocol":"TCP"}]})";

const std::string kService =
    R"({"cluster":"cluster-3","namespace":"default","name":"web",)"
    R"("frontends":{"10.96.0.10":{"http":{"Protocol":"TCP","Port":80}}},)"
    R"("backends":{"10.244.0.9":{"http":{"Protocol":"TCP","Port":8080}},)"
    R"("10.244.1.9":{"http":{"Protocol":"TCP","Port":8080}},)"
    R"("10.244.2.9":{"http":{"Protocol":"TCP","Port":8080}}},)"
    R"("labels":{"app":"web"},"selector":{"app":"web"},"includeExternal":false,)"
    R"("shared":true,"clusterID":3})";

const std::string kLabels =
    "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=cluster-3;"
    "k8s:io.cilium.k8s.policy.serviceaccount=web;k8s:io.kubernetes.pod.namespace=default;";

template <typename T>
void BM_Parse(benchmark::State& state, const std::string& key, const std::string* value) {
  for (auto _ : state) {
    T object;
    absl::Status status = object.Unmarshal(key, *value);
    if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
    benchmark::DoNotOptimize(object);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * value->size()));
}

template <typename T>
void BM_Marshal(benchmark::State& state, const std::string& key, const std::string* value) {
  T object;
  if (!object.Unmarshal(key, *value).ok()) state.SkipWithError("bad value");
  for (auto _ : state) {
    absl::StatusOr<std::string> out = object.Marshal();
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * value->size()));
}

template <typename J>
void BM_JsonLibrary(benchmark::State& state, const std::string* value) {
  for (auto _ : state) {
    J parsed = J::parse(*value);
    std::string out = parsed.dump();
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * value->size()));
}

void BM_NodeParse(benchmark::State& state) { BM_Parse<Node>(state, "cluster-3/node-0001", &kNode); }
void BM_NodeMarshal(benchmark::State& state) {
  BM_Marshal<Node>(state, "cluster-3/node-0001", &kNode);
}
void BM_IPCacheParse(benchmark::State& state) {
  BM_Parse<IPCacheEntry>(state, "10.244.0.9", &kIPCache);
}
void BM_IPCacheMarshal(benchmark::State& state) {
  BM_Marshal<IPCacheEntry>(state, "10.244.0.9", &kIPCache);
}
void BM_ServiceParse(benchmark::State& state) {
  BM_Parse<ClusterService>(state, "cluster-3/default/web", &kService);
}
void BM_ServiceMarshal(benchmark::State& state) {
  BM_Marshal<ClusterService>(state, "cluster-3/default/web", &kService);
}
void BM_IdentityParse(benchmark::State& state) { BM_Parse<Identity>(state, "id/196609", &kLabels); }
void BM_IdentityMarshal(benchmark::State& state) {
  BM_Marshal<Identity>(state, "id/196609", &kLabels);
}
// The JSON library alone: parse and dump (no Go escaping, no checks) of the node's bytes.
void BM_NodeOrderedJsonParseDump(benchmark::State& state) {
  BM_JsonLibrary<nlohmann::ordered_json>(state, &kNode);
}
void BM_NodeJsonParseDump(benchmark::State& state) {
  BM_JsonLibrary<nlohmann::json>(state, &kNode);
}

BENCHMARK(BM_NodeParse);
BENCHMARK(BM_NodeMarshal);
BENCHMARK(BM_IPCacheParse);
BENCHMARK(BM_IPCacheMarshal);
BENCHMARK(BM_ServiceParse);
BENCHMARK(BM_ServiceMarshal);
BENCHMARK(BM_IdentityParse);
BENCHMARK(BM_IdentityMarshal);
BENCHMARK(BM_NodeOrderedJsonParseDump);
BENCHMARK(BM_NodeJsonParseDump);

}  // namespace
}  // namespace kvstore::cilium

BENCHMARK_MAIN();
