// pybind11 bindings of the optional CUDA kernels: dccnn._cuda. Imported lazily by
// python/dccnn/_cuda_backend.py; the CPU extension dccnn._core never depends on it.
// Errors: std::invalid_argument -> ValueError, DeviceMemoryError -> MemoryError,
// DeviceError (any CUDA failure) -> RuntimeError, Ctrl-C -> KeyboardInterrupt.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string>

#include "bindings/common.hpp"

#include "cuda_kernels.hpp"

namespace py = pybind11;
namespace dc = dccnn::cuda;
using dc::index_t;

namespace {

using dccnn_bindings::carray;
using dccnn_bindings::kernel_spec;
using dccnn_bindings::require;


// Runs f without the GIL; the interrupt check (between batches) takes the GIL back briefly.
template <class F>
dc::RunStats run_without_gil(std::int64_t max_device_memory, bool discard, F&& f) {
  dc::Options opt;
  opt.max_device_memory = max_device_memory;
  opt.discard_output = discard;
  opt.check = [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
  dc::RunStats st;
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      st = f(opt);
    } catch (const dc::DeviceInterrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw py::value_error("interrupted");
  }
  return st;
}

py::dict stats_dict(const dc::RunStats& st) {
  py::dict d;
  d["device_seconds"] = st.device_seconds;
  d["batches"] = st.batches;
  d["batch_rows"] = st.batch_rows;
  d["batch_cols"] = st.batch_cols;
  d["split_windows"] = st.split_windows;
  d["device_bytes"] = st.device_bytes;
  return d;
}

template <class T>
py::tuple kernel_matrix(const carray<T>& Z1, const py::object& Z2_or_none, int kind, double gamma,
                        int degree, double coef0, double constant, std::int64_t max_device_memory) {
  require(Z1.ndim() == 2, "Z1: expected a 2-d array (n1, d)");
  carray<T> Z2;
  const T* b = nullptr;
  index_t n2 = Z1.shape(0);
  if (!Z2_or_none.is_none()) {
    Z2 = Z2_or_none.cast<carray<T>>();
    require(Z2.ndim() == 2, "Z2: expected a 2-d array (n2, d)");
    require(Z1.shape(1) == Z2.shape(1), "Z2: must have as many columns as Z1");
    n2 = Z2.shape(0);
    b = Z2.data();
  }
  const auto spec = kernel_spec(kind, gamma, degree, coef0, constant);
  const index_t n1 = Z1.shape(0), d = Z1.shape(1);
  carray<T> out({n1, n2});
  const T* a = Z1.data();
  T* o = out.mutable_data();
  const auto st = run_without_gil(max_device_memory, false, [&](const dc::Options& opt) {
    return dc::kernel_matrix<T>(a, n1, b, n2, d, spec, o, opt);
  });
  return py::make_tuple(out, stats_dict(st));
}

// The arguments every pooled-block entry point shares, checked, with raw pointers.
template <class T>
struct PooledCall {
  dccnn_bindings::PooledArgs<T> args;
  dccnn::KernelSpec spec;
  const index_t* position_ptr;
  const std::int32_t* position_window;
};

template <class T>
PooledCall<T> pooled_call(const carray<T>& Z1, const py::object& Z2_or_none,
                          const carray<index_t>& position_ptr,
                          const carray<std::int32_t>& position_window, index_t n_windows,
                          int kind, double gamma, int degree, double coef0, double constant) {
  PooledCall<T> c{dccnn_bindings::check_pooled_args(Z1, Z2_or_none, position_ptr,
                                                    position_window),
                  {}, position_ptr.data(), position_window.data()};
  require(n_windows >= 1, "pooling: n_windows must be >= 1");
  c.spec = kernel_spec(kind, gamma, degree, coef0, constant);
  return c;
}

template <class T>
py::tuple pooled_kernel_blocks(const carray<T>& Z1, const py::object& Z2_or_none,
                               const carray<index_t>& position_ptr,
                               const carray<std::int32_t>& position_window, index_t n_windows,
                               int kind, double gamma, int degree, double coef0, double constant,
                               std::int64_t max_device_memory, bool discard_output) {
  const auto c = pooled_call(Z1, Z2_or_none, position_ptr, position_window, n_windows, kind,
                             gamma, degree, coef0, constant);
  const auto& g = c.args;
  py::object result = py::none();
  T* o = nullptr;
  if (!discard_output) {
    carray<T> out({g.n1, g.n2, n_windows, n_windows});
    o = out.mutable_data();
    result = out;
  }
  const T* a = Z1.data();
  const auto st = run_without_gil(max_device_memory, discard_output, [&](const dc::Options& opt) {
    return dc::pooled_kernel_blocks<T>(a, g.n1, g.b, g.n2, g.P, g.d, c.position_ptr,
                                       c.position_window, n_windows, c.spec, o, opt);
  });
  return py::make_tuple(result, stats_dict(st));
}

// The pooled blocks reduced on the device: contracted with beta (cross) or their traces.
template <class T>
py::tuple pooled_kernel_cross(const carray<T>& Z1, const py::object& Z2_or_none,
                              const carray<index_t>& position_ptr,
                              const carray<std::int32_t>& position_window, index_t n_windows,
                              int kind, double gamma, int degree, double coef0, double constant,
                              const carray<double>& beta, std::int64_t max_device_memory) {
  const auto c = pooled_call(Z1, Z2_or_none, position_ptr, position_window, n_windows, kind,
                             gamma, degree, coef0, constant);
  const auto& g = c.args;
  require(beta.ndim() == 2 && beta.shape(0) == g.n2 && beta.shape(1) >= 1,
          "beta: expected a 2-d array (n2, K) with a row per image of Z2 (Z1 when Z2 is None)");
  const index_t K = beta.shape(1);
  carray<double> H({g.n1, n_windows, n_windows * K});
  if (g.n2 == 0) {  // no column image: every sum is empty
    std::fill(H.mutable_data(), H.mutable_data() + H.size(), 0.0);
    return py::make_tuple(H, stats_dict(dc::RunStats{}));
  }
  const T* a = Z1.data();
  const double* w = beta.data();
  double* h = H.mutable_data();
  const auto st = run_without_gil(max_device_memory, false, [&](const dc::Options& opt) {
    return dc::pooled_kernel_cross<T>(a, g.n1, g.b, g.n2, g.P, g.d, c.position_ptr,
                                      c.position_window, n_windows, c.spec, w, K, h, opt);
  });
  return py::make_tuple(H, stats_dict(st));
}

template <class T>
py::tuple pooled_kernel_traces(const carray<T>& Z1, const py::object& Z2_or_none,
                               const carray<index_t>& position_ptr,
                               const carray<std::int32_t>& position_window, index_t n_windows,
                               int kind, double gamma, int degree, double coef0, double constant,
                               std::int64_t max_device_memory) {
  const auto c = pooled_call(Z1, Z2_or_none, position_ptr, position_window, n_windows, kind,
                             gamma, degree, coef0, constant);
  const auto& g = c.args;
  carray<double> out({g.n1, g.n2});
  const T* a = Z1.data();
  double* o = out.mutable_data();
  const auto st = run_without_gil(max_device_memory, false, [&](const dc::Options& opt) {
    return dc::pooled_kernel_traces<T>(a, g.n1, g.b, g.n2, g.P, g.d, c.position_ptr,
                                       c.position_window, n_windows, c.spec, o, opt);
  });
  return py::make_tuple(out, stats_dict(st));
}

// The blocks of all pairs of Z evaluated once and held on the device (GIL released, Ctrl-C
// between batches); MemoryError when they do not fit the budget.
template <class T>
std::unique_ptr<dc::HeldBlocks<T>> held_blocks(const carray<T>& Z,
                                               const carray<index_t>& position_ptr,
                                               const carray<std::int32_t>& position_window,
                                               index_t n_windows, int kind, double gamma,
                                               int degree, double coef0, double constant,
                                               std::int64_t max_device_memory) {
  const auto c = pooled_call(Z, py::none(), position_ptr, position_window, n_windows, kind, gamma,
                             degree, coef0, constant);
  const auto& g = c.args;
  require(g.n1 >= 1, "Z: expected at least one image");
  const T* a = Z.data();
  std::unique_ptr<dc::HeldBlocks<T>> held;
  run_without_gil(max_device_memory, false, [&](const dc::Options& opt) {
    held = std::make_unique<dc::HeldBlocks<T>>(a, g.n1, g.P, g.d, c.position_ptr,
                                               c.position_window, n_windows, c.spec, opt);
    return held->evaluation();
  });
  return held;
}

template <class T>
void bind_held_blocks(py::module_& m, const char* name) {
  using H = dc::HeldBlocks<T>;
  // module-local: builds of this module under other names (the CPU emulation's, in the
  // tests) can be loaded in the same process
  py::class_<H>(m, name, py::module_local(),
                "Pooled kernel blocks of all pairs of one set of images, held on the GPU")
      .def("cross",
           [](const H& h, const carray<double>& beta) {
             require(beta.ndim() == 2 && beta.shape(0) == h.n() && beta.shape(1) >= 1,
                     "beta: expected a 2-d array (n, K) with a row per image");
             const index_t K = beta.shape(1), Q = h.n_windows();
             carray<double> out({h.n(), Q, Q * K});
             const double* w = beta.data();
             double* o = out.mutable_data();
             dc::RunStats st;
             {
               py::gil_scoped_release release;
               st = h.cross(w, K, o);
             }
             return py::make_tuple(out, stats_dict(st));
           },
           py::arg("beta"))
      .def("traces",
           [](const H& h) {
             carray<double> out({h.n(), h.n()});
             double* o = out.mutable_data();
             dc::RunStats st;
             {
               py::gil_scoped_release release;
               st = h.traces(o);
             }
             return py::make_tuple(out, stats_dict(st));
           })
      .def_property_readonly("n", &H::n)
      .def_property_readonly("n_windows", &H::n_windows)
      .def_property_readonly("held_bytes", &H::held_bytes)
      .def_property_readonly("evaluation", [](const H& h) { return stats_dict(h.evaluation()); });
  m.def("held_blocks", &held_blocks<T>, py::arg("Z").noconvert(), py::arg("position_ptr"),
        py::arg("position_window"), py::arg("n_windows"), py::arg("kind"), py::arg("gamma"),
        py::arg("degree"), py::arg("coef0"), py::arg("constant"),
        py::arg("max_device_memory") = 0);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "dccnn CUDA kernels (optional; imported lazily by dccnn._cuda_backend)";
  // DeviceMemoryError -> dccnn._cuda.DeviceMemoryError (a MemoryError); DeviceError derives
  // from std::runtime_error and reaches Python as RuntimeError.
  py::register_exception<dc::DeviceMemoryError>(m, "DeviceMemoryError", PyExc_MemoryError);

  m.def("device_count", &dc::device_count, "Number of usable CUDA devices (0 without a driver)");
  m.def("unavailable_reason", &dc::unavailable_reason);
  m.def("device_info", [] {
    const auto i = dc::device_info();
    py::dict d;
    d["name"] = i.name;
    d["compute_capability"] = py::make_tuple(i.major, i.minor);
    d["multiprocessors"] = i.multiprocessors;
    d["clock_khz"] = i.clock_khz;
    d["memory_total"] = i.memory_total;
    d["memory_free"] = i.memory_free;
    d["l2_bytes"] = i.l2_bytes;
    d["fp32_lanes_per_sm"] = i.fp32_lanes_per_sm;
    d["fp64_lanes_per_sm"] = i.fp64_lanes_per_sm;
    return d;
  });
  m.def("kernel_matrix", &kernel_matrix<float>, py::arg("Z1").noconvert(), py::arg("Z2"),
        py::arg("kind"), py::arg("gamma"), py::arg("degree"), py::arg("coef0"),
        py::arg("constant"), py::arg("max_device_memory") = 0);
  m.def("kernel_matrix", &kernel_matrix<double>, py::arg("Z1").noconvert(), py::arg("Z2"),
        py::arg("kind"), py::arg("gamma"), py::arg("degree"), py::arg("coef0"),
        py::arg("constant"), py::arg("max_device_memory") = 0);
  m.def("pooled_kernel_blocks", &pooled_kernel_blocks<float>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("max_device_memory") = 0,
        py::arg("discard_output") = false);
  m.def("pooled_kernel_blocks", &pooled_kernel_blocks<double>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("max_device_memory") = 0,
        py::arg("discard_output") = false);
  m.def("pooled_kernel_cross", &pooled_kernel_cross<float>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("beta"), py::arg("max_device_memory") = 0);
  m.def("pooled_kernel_cross", &pooled_kernel_cross<double>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("beta"), py::arg("max_device_memory") = 0);
  m.def("pooled_kernel_traces", &pooled_kernel_traces<float>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("max_device_memory") = 0);
  m.def("pooled_kernel_traces", &pooled_kernel_traces<double>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("max_device_memory") = 0);
  bind_held_blocks<float>(m, "HeldBlocksFloat32");
  bind_held_blocks<double>(m, "HeldBlocksFloat64");
}
