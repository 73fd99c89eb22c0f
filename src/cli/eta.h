// A progress line with an ETA for steps counted in units (sweep points, atlas
// tensors, scored tokens): "sweep 3/10 points 30%  1.2 s/point  ETA 8 s",
// rewritten in place on stderr when it is a terminal, silent otherwise.
#pragma once

#include "lmlab/progress.h"

namespace lmlab::cli {

ProgressCallback eta_progress();

}  // namespace lmlab::cli
