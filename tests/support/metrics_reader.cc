#include "tests/support/metrics_reader.h"

#include <utility>
#include <vector>

namespace kvstore::testing {
namespace {

// The series `name` with exactly `labels`, with its family's type.
std::optional<std::pair<prometheus::MetricType, prometheus::ClientMetric>> FindSeries(
    const prometheus::Registry& registry, std::string_view name,
    const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> metric_labels;
      for (const auto& label : metric.label) metric_labels[label.name] = label.value;
      if (metric_labels == labels) return std::make_pair(family.type, metric);
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<double> ReadMetric(const prometheus::Registry& registry, std::string_view name,
                                 const std::map<std::string, std::string>& labels) {
  auto series = FindSeries(registry, name, labels);
  if (!series) return std::nullopt;
  const auto& [type, metric] = *series;
  switch (type) {
    case prometheus::MetricType::Counter:
      return metric.counter.value;
    case prometheus::MetricType::Gauge:
      return metric.gauge.value;
    case prometheus::MetricType::Histogram:
      return static_cast<double>(metric.histogram.sample_count);
    default:
      return std::nullopt;
  }
}

std::optional<double> ReadHistogramSum(const prometheus::Registry& registry, std::string_view name,
                                       const std::map<std::string, std::string>& labels) {
  auto series = FindSeries(registry, name, labels);
  if (!series || series->first != prometheus::MetricType::Histogram) return std::nullopt;
  return series->second.histogram.sample_sum;
}

}  // namespace kvstore::testing
