// Tile engine for the avx512 instruction set (compile flags set in CMakeLists.txt).
#define DCCNN_ISA avx512
#define DCCNN_ISA_NAME "avx512"
#define DCCNN_TILE_MR 8
#define DCCNN_TILE_BYTES 128
#include "dccnn/tile_engine.inc"
