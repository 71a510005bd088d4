// Average pooling on the grid of patch positions, described as "which windows contain
// position p" (CSR). Any window layout works; every window is averaged over its members.
#pragma once

#include "dccnn/common.hpp"

namespace dccnn {

struct PoolingMap {
  index_t n_positions = 0;               // P
  index_t n_windows = 0;                 // Q
  const index_t* position_ptr = nullptr;  // P + 1 offsets into position_window
  const std::int32_t* position_window = nullptr;
};

// Throws std::invalid_argument when the map is inconsistent or a window is empty.
void validate(const PoolingMap& pooling);

}  // namespace dccnn
