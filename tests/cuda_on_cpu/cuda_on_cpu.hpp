// CUDA C++ on the CPU, for testing the logic of dccnn's CUDA sources where no GPU is present.
//
// tests/cuda_on_cpu/build.py compiles csrc/cuda (with its launches rewritten as calls, see
// its translate) against this header instead of the CUDA toolkit, into a dccnn._cuda that
// runs everywhere. It models what the kernels and their host orchestration rely on, strictly enough
// that a wrong index, a missing wait or a missing synchronisation changes the results:
//
// - Thread blocks run one after another; the threads of a block are fibers (ucontext) that
//   run in turn up to each __syncthreads. Every thread of a block must reach the same
//   barrier the same number of times (else the launch fails: a divergent barrier).
// - __shared__ arrays are function statics (one block runs at a time); dynamic shared memory
//   is a fresh buffer per block. Device allocations and dynamic shared memory start as NaN
//   bytes (0xFF), as uninitialised memory would, and end at a guard page.
// - Asynchronous copies (__pipeline_memcpy_async) land only when their thread waits for them
//   (__pipeline_wait_prior), never at a barrier.
// - Streams are queues run as late as possible: at a synchronisation of the host (stream,
//   event, cudaFree, a copy to pageable memory) or when another stream waits on one of their
//   events. Work that is not ordered by events is therefore not done when the host looks.
// - Launch configurations are checked against the limits of sm_80, the smallest of the built
//   architectures (1024 threads, grid y and z < 65536, 48 KiB of dynamic shared memory unless
//   cudaFuncSetAttribute raised it, at most 163 KiB).
//
// The runtime serves one host thread at a time (dccnn's orchestration calls it from one).
// The device: one, named below, with DCCNN_CUDA_ON_CPU_SMS multiprocessors (default 4) and
// DCCNN_CUDA_ON_CPU_MEMORY bytes of memory (default 2 GiB). Nothing here says anything about
// speed; the kernels' speed is measured on a GPU (bench/).
#pragma once

#include <sys/mman.h>
#include <setjmp.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// Device functions that CUDA provides unqualified.
using std::exp;
using std::fma;
using std::fmin;
using std::max;
using std::min;

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline float __frcp_rn(float x) { return 1.0f / x; }

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidPitchValue = 12,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr { cudaDevAttrClockRate = 13, cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount, l2CacheSize;
  std::size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
};

namespace cuda_on_cpu {

struct Stream;
struct Event;

}  // namespace cuda_on_cpu

using cudaStream_t = cuda_on_cpu::Stream*;
using cudaEvent_t = cuda_on_cpu::Event*;

namespace cuda_on_cpu {

constexpr std::size_t kDefaultSharedBytes = 48 << 10;
constexpr std::size_t kOptinSharedBytes = 163 << 10;  // sm_80
constexpr std::size_t kStackBytes = 256 << 10;

inline std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

// ---------------------------------------------------------------------------------------------
// Memory: page-aligned mappings whose usable bytes end at a PROT_NONE guard page.
// ---------------------------------------------------------------------------------------------

struct Mapping {
  char* base = nullptr;
  std::size_t span = 0;
  char* ptr = nullptr;
  std::size_t bytes = 0;
};

inline Mapping map_guarded(std::size_t bytes, unsigned char fill) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 15) & ~std::size_t(15);
  const std::size_t span = (rounded + page - 1) / page * page + page;
  void* base = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return {};
  char* b = static_cast<char*>(base);
  mprotect(b + span - page, page, PROT_NONE);
  Mapping m{b, span, b + span - page - rounded, bytes};
  std::memset(m.ptr, fill, rounded);
  return m;
}

// A fiber stack: it grows down, so the guard page is below it.
inline Mapping map_stack(std::size_t bytes) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t span = bytes + page;
  void* base = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return {};
  char* b = static_cast<char*>(base);
  mprotect(b, page, PROT_NONE);
  return Mapping{b, span, b + page, bytes};
}

inline void unmap(const Mapping& m) {
  if (m.base) munmap(m.base, m.span);
}

// ---------------------------------------------------------------------------------------------
// Thread blocks as fibers
// ---------------------------------------------------------------------------------------------

struct Copy {
  void* dst;
  const void* src;
  std::size_t bytes;
};

// A CUDA thread. Fibers are started once on their own stack and then park between blocks;
// they switch with _setjmp/_longjmp (swapcontext would make a system call for the signal
// mask at every switch, 10x the cost of a whole barrier otherwise).
struct Fiber {
  jmp_buf env;
  Mapping stack;
  bool started = false;
  dim3 tid;
  enum State { kReady, kAtBarrier, kDone } state = kDone;
  int barrier_line = 0;
  long long barriers = 0;
  std::vector<Copy> open;                   // issued, not yet committed
  std::deque<std::vector<Copy>> committed;  // batches, oldest first
};

struct BlockRun {
  std::vector<Fiber*> fibers;
  dim3 block, grid, block_dim;
  const std::function<void()>* body = nullptr;
  std::string fault;
};

struct Scheduler {
  jmp_buf env;
  std::vector<std::unique_ptr<Fiber>> fibers;  // stable addresses, reused by every launch
  Fiber* current = nullptr;
  BlockRun* run = nullptr;
  void* extern_shared = nullptr;  // the block's dynamic shared memory
};

inline Scheduler scheduler;

inline const dim3& thread_index() { return scheduler.current->tid; }
inline const dim3& block_index() { return scheduler.run->block; }
inline const dim3& block_dim() { return scheduler.run->block_dim; }
inline const dim3& grid_dim() { return scheduler.run->grid; }
// Dynamic shared memory of the running block (extern __shared__, rewritten by build.py).
inline void* extern_shared() { return scheduler.extern_shared; }

inline void to_scheduler(Fiber* f) {
  if (!_setjmp(f->env)) _longjmp(scheduler.env, 1);
}

inline void resume(Fiber* f) {
  scheduler.current = f;
  if (!_setjmp(scheduler.env)) _longjmp(f->env, 1);
}

inline void fiber_main() {
  Fiber* f = scheduler.current;
  for (;;) {
    f->state = Fiber::kDone;
    to_scheduler(f);
    (*scheduler.run->body)();
  }
}

inline void start(Fiber* f) {
  ucontext_t self, ctx;
  getcontext(&ctx);
  ctx.uc_stack.ss_sp = f->stack.ptr;
  ctx.uc_stack.ss_size = f->stack.bytes;
  ctx.uc_link = nullptr;
  makecontext(&ctx, fiber_main, 0);
  scheduler.current = f;
  if (!_setjmp(scheduler.env)) swapcontext(&self, &ctx);  // fiber_main parks at once
  f->started = true;
}

inline void syncthreads(int line) {
  Fiber* f = scheduler.current;
  f->state = Fiber::kAtBarrier;
  f->barrier_line = line;
  ++f->barriers;
  to_scheduler(f);
}

inline void complete(std::vector<Copy>& batch) {
  for (const Copy& c : batch) std::memcpy(c.dst, c.src, c.bytes);
  batch.clear();
}

inline void fault(const std::string& what) {
  if (scheduler.run->fault.empty()) scheduler.run->fault = what;
  to_scheduler(scheduler.current);
}

// One block: every fiber runs until its next barrier (or its end), then the barrier is
// checked and released. Returns false (with run.fault set) when the block faulted.
inline bool run_block(BlockRun& run) {
  auto abandon = [&] {  // fibers stopped inside the kernel start afresh next time
    for (Fiber* f : run.fibers)
      if (f->state != Fiber::kDone) f->started = false;
    return false;
  };
  for (Fiber* f : run.fibers) {
    if (!f->started) start(f);
    f->state = Fiber::kReady;
    f->barriers = 0;
    f->open.clear();
    f->committed.clear();
  }
  for (;;) {
    for (Fiber* f : run.fibers) {
      if (f->state != Fiber::kReady) continue;
      resume(f);
      if (!run.fault.empty()) return abandon();
    }
    std::size_t done = 0;
    const Fiber* first = nullptr;
    for (const Fiber* f : run.fibers) {
      if (f->state == Fiber::kDone) ++done;
      if (f->state != Fiber::kAtBarrier) continue;
      if (!first) first = f;
      if (f->barrier_line != first->barrier_line || f->barriers != first->barriers) {
        run.fault = "divergent __syncthreads: threads wait at line " +
                    std::to_string(first->barrier_line) + " (barrier " +
                    std::to_string(first->barriers) + ") and at line " +
                    std::to_string(f->barrier_line) + " (barrier " +
                    std::to_string(f->barriers) + ")";
        return abandon();
      }
    }
    if (done == run.fibers.size()) break;
    if (done > 0) {
      run.fault = "__syncthreads at line " + std::to_string(first->barrier_line) + " while " +
                  std::to_string(done) + " threads of the block have exited";
      return abandon();
    }
    for (Fiber* f : run.fibers) f->state = Fiber::kReady;
  }
  for (Fiber* f : run.fibers) {  // copies never waited for still land, eventually
    for (auto& b : f->committed) complete(b);
    complete(f->open);
  }
  return true;
}

inline std::string run_grid(const char* name, dim3 grid, dim3 block, std::size_t shared_bytes,
                            const std::function<void()>& body) {
  const std::size_t n = std::size_t(block.x) * block.y * block.z;
  while (scheduler.fibers.size() < n) {
    auto f = std::make_unique<Fiber>();
    f->stack = map_stack(kStackBytes);
    if (!f->stack.ptr) return std::string(name) + ": no memory for the stacks of its threads";
    scheduler.fibers.push_back(std::move(f));
  }
  BlockRun run;
  run.grid = grid;
  run.block_dim = block;
  run.body = &body;
  for (std::size_t t = 0; t < n; ++t) {
    Fiber* f = scheduler.fibers[t].get();
    f->tid = dim3(static_cast<unsigned>(t % block.x), static_cast<unsigned>(t / block.x % block.y),
                  static_cast<unsigned>(t / (std::size_t(block.x) * block.y)));
    run.fibers.push_back(f);
  }
  scheduler.run = &run;
  std::string fault;
  for (unsigned bz = 0; bz < grid.z && fault.empty(); ++bz)
    for (unsigned by = 0; by < grid.y && fault.empty(); ++by)
      for (unsigned bx = 0; bx < grid.x && fault.empty(); ++bx) {
        run.block = dim3(bx, by, bz);
        const Mapping shared = map_guarded(shared_bytes, 0xFF);
        scheduler.extern_shared = shared.ptr;
        if (!run_block(run))
          fault = std::string(name) + ", block (" + std::to_string(bx) + ", " +
                  std::to_string(by) + ", " + std::to_string(bz) + "): " + run.fault;
        unmap(shared);
      }
  scheduler.run = nullptr;
  return fault;
}

// ---------------------------------------------------------------------------------------------
// The runtime: device, memory registry, streams and events, errors
// ---------------------------------------------------------------------------------------------

inline const char* const kDeviceName = "CPU emulation of CUDA (dccnn tests/cuda_on_cpu)";

struct Runtime {
  std::map<std::uintptr_t, Mapping> device;  // by start address
  std::map<std::uintptr_t, std::size_t> pinned;  // start -> bytes
  std::set<Stream*> streams;
  std::map<const void*, std::size_t> shared_limit;  // kernel -> max dynamic shared bytes
  std::size_t allocated = 0;
  cudaError_t last_error = cudaSuccess;
  std::string detail;  // of the last error
  std::size_t total_memory() const {
    return static_cast<std::size_t>(env_int("DCCNN_CUDA_ON_CPU_MEMORY", std::int64_t(2) << 30));
  }
};

inline Runtime& runtime() {
  static Runtime rt;
  return rt;
}

inline cudaError_t fail(cudaError_t e, const std::string& detail) {
  Runtime& rt = runtime();
  rt.last_error = e;
  rt.detail = detail;
  return e;
}

// The device allocation holding [p, p + bytes), or null.
inline const Mapping* device_range(const void* p, std::size_t bytes) {
  Runtime& rt = runtime();
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = rt.device.upper_bound(a);
  if (it == rt.device.begin()) return nullptr;
  --it;
  const Mapping& m = it->second;
  const auto start = reinterpret_cast<std::uintptr_t>(m.ptr);
  return a >= start && a + bytes <= start + m.bytes ? &m : nullptr;
}

inline bool is_device(const void* p) { return device_range(p, 1) != nullptr; }

struct Stream {
  std::deque<std::function<cudaError_t()>> ops;
  long long issued = 0, finished = 0;
  bool draining = false;
};

struct Event {
  Stream* stream = nullptr;  // of the last record; null: never recorded
  long long position = 0;    // complete once stream->finished reaches it
  std::chrono::steady_clock::time_point at{};
};

inline Stream& legacy_stream() {
  static Stream s;
  return s;
}

inline Stream* resolve(cudaStream_t s) { return s ? s : &legacy_stream(); }

// Runs the queued work of s up to position `upto`; the first error ends it.
inline cudaError_t drain(Stream* s, long long upto) {
  if (s->draining) return cudaSuccess;  // an op of s waits on an earlier point of s: passed
  s->draining = true;
  cudaError_t e = cudaSuccess;
  while (s->finished < upto && !s->ops.empty()) {
    std::function<cudaError_t()> op = std::move(s->ops.front());
    s->ops.pop_front();
    ++s->finished;
    const cudaError_t r = op();
    if (r != cudaSuccess && e == cudaSuccess) e = r;
  }
  s->draining = false;
  return e;
}

inline cudaError_t drain_all() {
  cudaError_t e = drain(&legacy_stream(), legacy_stream().issued);
  for (Stream* s : runtime().streams) {
    const cudaError_t r = drain(s, s->issued);
    if (e == cudaSuccess) e = r;
  }
  return e;
}

inline void enqueue(cudaStream_t stream, std::function<cudaError_t()> op) {
  Stream* s = resolve(stream);
  s->ops.push_back(std::move(op));
  ++s->issued;
}

// ---------------------------------------------------------------------------------------------
// Launches: KERNEL<<<grid, block, shared, stream>>>(args) is rewritten by build.py as
// cuda_on_cpu::launch("KERNEL", KERNEL, grid, block, shared, stream)(args).
// ---------------------------------------------------------------------------------------------

template <class Kernel>
struct Launch {
  const char* name;
  Kernel kernel;
  dim3 grid, block;
  std::size_t shared;
  cudaStream_t stream;

  template <class... Args>
  void operator()(Args&&... args) const {
    const std::size_t threads = std::size_t(block.x) * block.y * block.z;
    const std::string where = std::string(name) + ": ";
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 2147483647u) {
      fail(cudaErrorInvalidConfiguration,
           where + "grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " +
               std::to_string(grid.z) + ") out of range");
      return;
    }
    if (threads == 0 || threads > 1024 || block.z > 64) {
      fail(cudaErrorInvalidConfiguration, where + std::to_string(threads) + " threads per block");
      return;
    }
    std::size_t limit = kDefaultSharedBytes;
    {
      auto& lim = runtime().shared_limit;
      auto it = lim.find(reinterpret_cast<const void*>(kernel));
      if (it != lim.end()) limit = std::max(limit, it->second);
    }
    if (shared > limit) {
      fail(cudaErrorInvalidValue, where + std::to_string(shared) +
                                      " bytes of dynamic shared memory, over the limit of " +
                                      std::to_string(limit));
      return;
    }
    auto call = [kernel = kernel, tup = std::make_tuple(std::decay_t<Args>(args)...)] {
      std::apply(kernel, tup);
    };
    enqueue(stream, [name = name, grid = grid, block = block, shared = shared, call]() {
      const std::function<void()> body = call;
      const std::string fault = run_grid(name, grid, block, shared, body);
      return fault.empty() ? cudaSuccess : fail(cudaErrorLaunchFailure, fault);
    });
  }
};

template <class Kernel>
Launch<Kernel> launch(const char* name, Kernel kernel, dim3 grid, dim3 block,
                      std::size_t shared = 0, cudaStream_t stream = nullptr) {
  return {name, kernel, grid, block, shared, stream};
}

}  // namespace cuda_on_cpu

// ---------------------------------------------------------------------------------------------
// Device-side API
// ---------------------------------------------------------------------------------------------

inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t bytes) {
  using cuda_on_cpu::scheduler;
  if (!(bytes == 4 || bytes == 8 || bytes == 16) ||
      reinterpret_cast<std::uintptr_t>(dst) % bytes || reinterpret_cast<std::uintptr_t>(src) % bytes)
    cuda_on_cpu::fault("__pipeline_memcpy_async of " + std::to_string(bytes) +
                       " bytes: the size must be 4, 8 or 16 and both addresses aligned to it");
  scheduler.current->open.push_back({dst, src, bytes});
}
inline void __pipeline_commit() {
  cuda_on_cpu::Fiber* f = cuda_on_cpu::scheduler.current;
  f->committed.push_back(std::move(f->open));
  f->open.clear();
}
inline void __pipeline_wait_prior(std::size_t prior) {
  cuda_on_cpu::Fiber* f = cuda_on_cpu::scheduler.current;
  while (f->committed.size() > prior) {
    cuda_on_cpu::complete(f->committed.front());
    f->committed.pop_front();
  }
}

// ---------------------------------------------------------------------------------------------
// Host-side API
// ---------------------------------------------------------------------------------------------

inline cudaError_t cudaGetLastError() {
  auto& rt = cuda_on_cpu::runtime();
  const cudaError_t e = rt.last_error;
  rt.last_error = cudaSuccess;
  return e;
}

inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

// The detail of the most recent error (the emulation says what went wrong, not only its code).
inline const char* cudaGetErrorString(cudaError_t e) {
  auto& rt = cuda_on_cpu::runtime();
  return e == cudaSuccess ? "no error" : rt.detail.empty() ? cudaGetErrorName(e) : rt.detail.c_str();
}

inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = static_cast<int>(cuda_on_cpu::env_int("DCCNN_CUDA_ON_CPU_DEVICES", 1));
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline int emulated_multiprocessors() {
  return static_cast<int>(std::max<std::int64_t>(1, cuda_on_cpu::env_int("DCCNN_CUDA_ON_CPU_SMS", 4)));
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  *value = attr == cudaDevAttrMultiProcessorCount ? emulated_multiprocessors() : 1410000;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "%s", cuda_on_cpu::kDeviceName);
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = emulated_multiprocessors();
  prop->l2CacheSize = 40 << 20;
  prop->totalGlobalMem = cuda_on_cpu::runtime().total_memory();
  prop->sharedMemPerBlock = cuda_on_cpu::kDefaultSharedBytes;
  prop->sharedMemPerBlockOptin = cuda_on_cpu::kOptinSharedBytes;
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  auto& rt = cuda_on_cpu::runtime();
  *total_bytes = rt.total_memory();
  *free_bytes = *total_bytes > rt.allocated ? *total_bytes - rt.allocated : 0;
  return cudaSuccess;
}

template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<std::size_t>(value) > cuda_on_cpu::kOptinSharedBytes)
    return cuda_on_cpu::fail(cudaErrorInvalidValue,
                             "cudaFuncSetAttribute: " + std::to_string(value) +
                                 " bytes of dynamic shared memory, over sm_80's 163 KiB");
  cuda_on_cpu::runtime().shared_limit[reinterpret_cast<const void*>(kernel)] =
      static_cast<std::size_t>(value);
  return cudaSuccess;
}

inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  auto& rt = cuda_on_cpu::runtime();
  if (rt.allocated + bytes > rt.total_memory())
    return cuda_on_cpu::fail(cudaErrorMemoryAllocation,
                             "out of memory (" + std::to_string(bytes) + " bytes asked, " +
                                 std::to_string(rt.total_memory() - rt.allocated) + " free)");
  const cuda_on_cpu::Mapping m = cuda_on_cpu::map_guarded(bytes, 0xFF);
  if (!m.ptr) return cuda_on_cpu::fail(cudaErrorMemoryAllocation, "out of host memory");
  rt.device[reinterpret_cast<std::uintptr_t>(m.ptr)] = m;
  rt.allocated += bytes;
  *p = m.ptr;
  return cudaSuccess;
}

// Frees after all queued work has run: cudaFree synchronises the device.
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  const cudaError_t e = cuda_on_cpu::drain_all();
  auto& rt = cuda_on_cpu::runtime();
  auto it = rt.device.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == rt.device.end())
    return cuda_on_cpu::fail(cudaErrorInvalidDevicePointer, "cudaFree of a pointer that cudaMalloc did not return");
  rt.allocated -= it->second.bytes;
  cuda_on_cpu::unmap(it->second);
  rt.device.erase(it);
  return e;
}

inline cudaError_t cudaHostAlloc(void** p, std::size_t bytes, unsigned) {
  *p = std::malloc(std::max<std::size_t>(bytes, 1));
  if (!*p) return cuda_on_cpu::fail(cudaErrorMemoryAllocation, "cudaHostAlloc: out of host memory");
  cuda_on_cpu::runtime().pinned[reinterpret_cast<std::uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* p) {
  const cudaError_t e = cuda_on_cpu::drain_all();
  cuda_on_cpu::runtime().pinned.erase(reinterpret_cast<std::uintptr_t>(p));
  std::free(p);
  return e;
}

namespace cuda_on_cpu {

inline bool is_pinned(const void* p) {
  const auto& pinned = runtime().pinned;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = pinned.upper_bound(a);
  if (it == pinned.begin()) return false;
  --it;
  return a < it->first + it->second;
}

// Checks the two sides of a copy of `bytes` against `kind`.
inline cudaError_t check_copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                              const char* what) {
  const bool to_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool from_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost &&
      kind != cudaMemcpyDeviceToDevice)
    return fail(cudaErrorInvalidMemcpyDirection, std::string(what) + ": unsupported direction");
  if (to_device ? !device_range(dst, bytes) : is_device(dst))
    return fail(cudaErrorInvalidValue, std::string(what) + ": the destination is not " +
                                           (to_device ? "a device range" : "host memory"));
  if (from_device ? !device_range(src, bytes) : is_device(src))
    return fail(cudaErrorInvalidValue, std::string(what) + ": the source is not " +
                                           (from_device ? "a device range" : "host memory"));
  return cudaSuccess;
}

// A copy into pageable host memory is done when the call returns.
inline cudaError_t finish_if_pageable(const void* dst, cudaMemcpyKind kind, cudaStream_t stream) {
  if (kind != cudaMemcpyDeviceToHost || is_pinned(dst)) return cudaSuccess;
  Stream* s = resolve(stream);
  return drain(s, s->issued);
}

// Enqueues a copy; the source of a host-to-device copy from pageable memory is read now (the
// call returns once it is staged), a copy into pageable host memory is done on return.
inline cudaError_t copy_async(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  if (kind == cudaMemcpyHostToDevice && !is_pinned(src)) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                      static_cast<const char*>(src) + bytes);
    enqueue(stream, [dst, staged] {
      std::memcpy(dst, staged->data(), staged->size());
      return cudaSuccess;
    });
    return cudaSuccess;
  }
  enqueue(stream, [dst, src, bytes] {
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
  });
  return finish_if_pageable(dst, kind, stream);
}

}  // namespace cuda_on_cpu

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes,
                                   cudaMemcpyKind kind, cudaStream_t stream = nullptr) {
  if (bytes == 0) return cudaSuccess;
  const cudaError_t e = cuda_on_cpu::check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
  return e != cudaSuccess ? e : cuda_on_cpu::copy_async(dst, src, bytes, kind, stream);
}

inline cudaError_t cudaMemcpy2DAsync(void* dst, std::size_t dpitch, const void* src,
                                     std::size_t spitch, std::size_t width, std::size_t height,
                                     cudaMemcpyKind kind, cudaStream_t stream = nullptr) {
  if (width > dpitch || width > spitch || dpitch > 2147483647u || spitch > 2147483647u)
    return cuda_on_cpu::fail(cudaErrorInvalidPitchValue, "cudaMemcpy2DAsync: invalid pitch");
  for (std::size_t r = 0; r < height; ++r) {
    char* d = static_cast<char*>(dst) + r * dpitch;
    const char* s = static_cast<const char*>(src) + r * spitch;
    const cudaError_t e = cuda_on_cpu::check_copy(d, s, width, kind, "cudaMemcpy2DAsync");
    if (e != cudaSuccess) return e;
  }
  auto rows = [=] {
    for (std::size_t r = 0; r < height; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                  width);
    return cudaSuccess;
  };
  cuda_on_cpu::enqueue(stream, rows);
  return cuda_on_cpu::finish_if_pageable(dst, kind, stream);
}

inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes,
                                   cudaStream_t stream = nullptr) {
  if (bytes == 0) return cudaSuccess;
  if (!cuda_on_cpu::device_range(p, bytes))
    return cuda_on_cpu::fail(cudaErrorInvalidValue, "cudaMemsetAsync: not a device range");
  cuda_on_cpu::enqueue(stream, [=] {
    std::memset(p, value, bytes);
    return cudaSuccess;
  });
  return cudaSuccess;
}

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new cuda_on_cpu::Stream;
  cuda_on_cpu::runtime().streams.insert(*s);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  cuda_on_cpu::Stream* s = cuda_on_cpu::resolve(stream);
  return cuda_on_cpu::drain(s, s->issued);
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  const cudaError_t e = cudaStreamSynchronize(s);
  cuda_on_cpu::runtime().streams.erase(s);
  delete s;
  return e;
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new cuda_on_cpu::Event;
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr) {
  cuda_on_cpu::Stream* s = cuda_on_cpu::resolve(stream);
  cuda_on_cpu::enqueue(stream, [e] {
    e->at = std::chrono::steady_clock::now();
    return cudaSuccess;
  });
  e->stream = s;
  e->position = s->issued;
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e->stream ? cuda_on_cpu::drain(e->stream, e->position) : cudaSuccess;
}
// The later work of `stream` waits for the event's last record (as it is now).
inline cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t e, unsigned) {
  if (!e->stream) return cudaSuccess;
  cuda_on_cpu::Stream* other = e->stream;
  const long long position = e->position;
  cuda_on_cpu::enqueue(stream, [other, position] { return cuda_on_cpu::drain(other, position); });
  return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  for (cudaEvent_t e : {a, b})
    if (!e->stream || e->stream->finished < e->position)
      return cuda_on_cpu::fail(cudaErrorNotReady, "cudaEventElapsedTime: an event has not completed");
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// CUDA C++ keywords and built-in variables
// ---------------------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
#define __syncthreads() ::cuda_on_cpu::syncthreads(__LINE__)
#define threadIdx (::cuda_on_cpu::thread_index())
#define blockIdx (::cuda_on_cpu::block_index())
#define blockDim (::cuda_on_cpu::block_dim())
#define gridDim (::cuda_on_cpu::grid_dim())
