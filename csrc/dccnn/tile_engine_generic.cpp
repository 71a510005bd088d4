// Tile engine for the generic instruction set (compile flags set in CMakeLists.txt).
#define DCCNN_ISA generic
#define DCCNN_ISA_NAME "generic"
#define DCCNN_TILE_MR 4
#define DCCNN_TILE_BYTES 32
#include "dccnn/tile_engine.inc"
