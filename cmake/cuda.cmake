# Optional CUDA kernels: the second extension dccnn._cuda (csrc/cuda), built only with
# -DDCCNN_USE_CUDA=ON. The CPU extension dccnn._core never links CUDA; _cuda links the CUDA
# runtime statically, so the wheel needs no CUDA library and only a driver at run time
# (without one, dccnn._cuda still imports and reports no device).
#
#   pip install . -Ccmake.define.DCCNN_USE_CUDA=ON
#   cmake -S . -B build/cuda -DDCCNN_USE_CUDA=ON [-DCMAKE_CUDA_ARCHITECTURES=native]
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR
    "DCCNN_USE_CUDA=ON but no CUDA compiler (nvcc) was found: install the CUDA toolkit, set "
    "CUDACXX or CMAKE_CUDA_COMPILER, or build without -DDCCNN_USE_CUDA=ON (the CPU build "
    "never needs CUDA).")
endif()
if(NOT DCCNN_BUILD_PYTHON)
  message(FATAL_ERROR "DCCNN_USE_CUDA=ON needs DCCNN_BUILD_PYTHON=ON (it builds dccnn._cuda)")
endif()

# Machine code for sm_80 (A100) and sm_90 (H100/H200) plus PTX for newer GPUs.
set(DCCNN_CUDA_ARCHITECTURES "80-real;90-real;90-virtual" CACHE STRING
    "CUDA architectures of dccnn._cuda (CMake CUDA_ARCHITECTURES syntax)")
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES ${DCCNN_CUDA_ARCHITECTURES})
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

add_library(dccnn_cuda_kernels STATIC csrc/cuda/pooled_kernel_blocks.cu
            csrc/cuda/block_reductions.cu csrc/cuda/held_blocks.cu csrc/dccnn/kernel_spec.cpp)
target_include_directories(dccnn_cuda_kernels PUBLIC csrc csrc/cuda)
set_target_properties(dccnn_cuda_kernels PROPERTIES
  CUDA_RUNTIME_LIBRARY Static
  POSITION_INDEPENDENT_CODE ON
  CUDA_VISIBILITY_PRESET hidden
  CXX_VISIBILITY_PRESET hidden)
target_compile_options(dccnn_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo -Xptxas=-warn-spills>)
target_link_libraries(dccnn_cuda_kernels PUBLIC CUDA::cudart_static)

pybind11_add_module(_cuda MODULE csrc/cuda/bindings.cpp)
target_link_libraries(_cuda PRIVATE dccnn_cuda_kernels)
install(TARGETS _cuda LIBRARY DESTINATION dccnn)
