#include "core/planted_bugs.h"

namespace kvstore::internal {

#ifdef KVSTORE_PLANTED_BUGS
PlantedBug& ActivePlantedBug() {
  static PlantedBug active = PlantedBug::kNone;
  return active;
}
#endif

}  // namespace kvstore::internal
