#include "tests/support/metrics_reader.h"

#include <vector>

namespace kvstore::testing {

std::optional<double> ReadMetric(const prometheus::Registry& registry, std::string_view name,
                                 const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> metric_labels;
      for (const auto& label : metric.label) metric_labels[label.name] = label.value;
      if (metric_labels != labels) continue;
      switch (family.type) {
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
  }
  return std::nullopt;
}

}  // namespace kvstore::testing
