// Resolves the CUDA toolkit header to the CPU emulation (see ../cuda_on_cpu.hpp).
#pragma once
#include "../cuda_on_cpu.hpp"
