// Tile engine for the avx2 instruction set (compile flags set in CMakeLists.txt).
#define DCCNN_ISA avx2
#define DCCNN_ISA_NAME "avx2"
#define DCCNN_TILE_MR 4
#define DCCNN_TILE_BYTES 64
#include "dccnn/tile_engine.inc"
