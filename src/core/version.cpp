#include "lmlab/core.h"

namespace lmlab {

const char* version() { return LMLAB_VERSION; }

}  // namespace lmlab
