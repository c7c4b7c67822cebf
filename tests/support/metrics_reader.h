// Reads one series of a prometheus-cpp registry, as a scrape would see it.
#ifndef KVSTORE_TESTS_SUPPORT_METRICS_READER_H_
#define KVSTORE_TESTS_SUPPORT_METRICS_READER_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "prometheus/registry.h"

namespace kvstore::testing {

// The value of the gauge or counter `name` whose labels are exactly `labels` (for a histogram: its
// sample count); nullopt when no such series exists.
std::optional<double> ReadMetric(const prometheus::Registry& registry, std::string_view name,
                                 const std::map<std::string, std::string>& labels);

// The sum of the samples of histogram `name` with exactly `labels`; nullopt when no such series.
std::optional<double> ReadHistogramSum(const prometheus::Registry& registry, std::string_view name,
                                       const std::map<std::string, std::string>& labels);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_METRICS_READER_H_
