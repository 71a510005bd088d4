// pybind11 bindings of the dccnn core: shape checks, GIL release, signal polling and error
// translation. All argument validation a user sees lives in python/dccnn; the core keeps its
// own guards (std::invalid_argument -> ValueError) so that no call can crash the interpreter.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/common.hpp"

#include "dccnn/dual_cd.hpp"
#include "dccnn/kernel_blocks.hpp"
#include "dccnn/patches.hpp"

#ifdef DCCNN_HAVE_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using dccnn::index_t;

namespace {

using dccnn_bindings::carray;
using dccnn_bindings::kernel_spec;
using dccnn_bindings::require;

// Runs f without the GIL; Ctrl-C (PyErr_CheckSignals) stops it and re-raises here.
template <class F>
void run_without_gil(F&& f) {
  const dccnn::InterruptCheck check = [] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      f(check);
    } catch (const dccnn::Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw py::value_error("interrupted");
  }
}


template <class T>
carray<T> extract_patches(const carray<T>& X, index_t size, index_t stride, index_t padding,
                          int n_threads) {
  require(X.ndim() == 4, "X: expected a 4-d array (n, C, H, W)");
  const dccnn::PatchGeometry g{X.shape(1), X.shape(2), X.shape(3), size, stride, padding};
  dccnn::validate(g);
  const index_t n = X.shape(0);
  carray<T> out({n, g.n_positions(), g.patch_dim()});
  const T* x = X.data();
  T* o = out.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck& check) {
    dccnn::extract_patches<T>(x, n, g, o, n_threads, check);
  });
  return out;
}

template <class T>
void normalize_patches(carray<T>& Z, bool center, bool scale, double eps, int n_threads) {
  require(Z.ndim() >= 1, "Z: expected at least one dimension");
  require(Z.writeable(), "Z: must be writeable");
  const index_t d = Z.shape(Z.ndim() - 1);
  const index_t count = d == 0 ? 0 : Z.size() / d;
  T* z = Z.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck&) {
    dccnn::normalize_patches<T>(z, count, d, center, scale, eps, n_threads);
  });
}

template <class T>
carray<T> kernel_matrix(const carray<T>& Z1, const carray<T>& Z2, int kind, double gamma,
                        int degree, double coef0, double constant, int n_threads) {
  require(Z1.ndim() == 2, "Z1: expected a 2-d array (n1, d)");
  require(Z2.ndim() == 2, "Z2: expected a 2-d array (n2, d)");
  require(Z1.shape(1) == Z2.shape(1), "Z2: must have as many columns as Z1");
  const auto spec = kernel_spec(kind, gamma, degree, coef0, constant);
  const index_t n1 = Z1.shape(0), n2 = Z2.shape(0), d = Z1.shape(1);
  carray<T> out({n1, n2});
  const T *a = Z1.data(), *b = Z2.data();
  T* o = out.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck& check) {
    dccnn::kernel_matrix<T>(a, n1, b, n2, d, spec, o, n_threads, check);
  });
  return out;
}

template <class T>
carray<T> pooled_kernel_blocks(const carray<T>& Z1, const py::object& Z2_or_none,
                               const carray<index_t>& position_ptr,
                               const carray<std::int32_t>& position_window, index_t n_windows,
                               int kind, double gamma, int degree, double coef0, double constant,
                               int n_threads) {
  const auto args = dccnn_bindings::check_pooled_args(Z1, Z2_or_none, position_ptr,
                                                      position_window);
  const index_t n1 = args.n1, n2 = args.n2, P = args.P, d = args.d;
  const T* b = args.b;
  dccnn::PoolingMap pooling{P, n_windows, position_ptr.data(), position_window.data()};
  dccnn::validate(pooling);
  const auto spec = kernel_spec(kind, gamma, degree, coef0, constant);
  carray<T> out({n1, n2, n_windows, n_windows});
  const T* a = Z1.data();
  T* o = out.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck& check) {
    dccnn::pooled_kernel_blocks<T>(a, n1, b, n2, d, pooling, spec, o, n_threads, check);
  });
  return out;
}

dccnn::CdOptions cd_options(int loss, double C, double tol, index_t max_epochs, bool shrinking,
                            std::uint64_t seed) {
  require(loss >= 0 && loss <= 3, "loss: unknown kind " + std::to_string(loss));
  dccnn::CdOptions o;
  o.loss = static_cast<dccnn::LossKind>(loss);
  o.C = C;
  o.tol = tol;
  o.max_epochs = max_epochs;
  o.shrinking = shrinking;
  o.seed = seed;
  return o;
}

// row_C: None, or the C of every row (N,), held by the caller for the call.
carray<double> optional_row_C(const py::object& row_C, index_t N) {
  if (row_C.is_none()) return carray<double>();
  auto r = row_C.cast<carray<double>>();
  require(r.ndim() == 1 && r.shape(0) == N, "row_C: expected None or an (N,) array");
  return r;
}

py::tuple cd_result(const dccnn::CdResult& r) {
  return py::make_tuple(r.epochs, r.pg_spread, r.converged);
}

// sign: an (N, K) array or None (all +1).
carray<double> optional_sign(const py::object& sign_or_none, index_t N, index_t K) {
  if (sign_or_none.is_none()) return carray<double>();
  auto sign = py::cast<carray<double>>(sign_or_none);
  require(sign.ndim() == 2 && sign.shape(0) == N && sign.shape(1) == K,
          "sign: expected (N, K) or None");
  return sign;
}

py::tuple dual_cd_dense(const carray<double>& gram, const py::object& sign_or_none,
                        const carray<double>& lin, carray<double>& alpha, carray<double>& G,
                        int loss, double C, double tol, index_t max_epochs, bool shrinking,
                        std::uint64_t seed, int n_threads, const py::object& row_C_or_none) {
  require(alpha.ndim() == 2 && alpha.writeable(), "alpha: expected a writeable (N, K) array");
  const index_t N = alpha.shape(0), K = alpha.shape(1);
  require(gram.ndim() == 2 && gram.shape(0) == N && gram.shape(1) == N,
          "gram: expected an (N, N) array with N = alpha.shape[0]");
  require(G.ndim() == 2 && G.shape(0) == K && G.shape(1) == N && G.writeable(),
          "G: expected a writeable (K, N) array");
  require(lin.ndim() == 2 && lin.shape(0) == N && lin.shape(1) == K, "lin: expected (N, K)");
  const carray<double> sign = optional_sign(sign_or_none, N, K);
  const carray<double> row_C = optional_row_C(row_C_or_none, N);
  auto opt = cd_options(loss, C, tol, max_epochs, shrinking, seed);
  if (!row_C_or_none.is_none()) opt.row_C = row_C.data();
  dccnn::CdResult r;
  const double *g = gram.data(), *l = lin.data();
  const double* sg = sign_or_none.is_none() ? nullptr : sign.data();
  double *a = alpha.mutable_data(), *state = G.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck& check) {
    r = dccnn::dual_cd_dense(g, N, K, sg, l, a, state, opt, n_threads, check);
  });
  return cd_result(r);
}

template <class T>
py::tuple dual_cd_linear(const carray<T>& X, const py::object& sign_or_none,
                         const carray<double>& lin, carray<double>& alpha, carray<double>& W,
                         int loss, double C, double tol, index_t max_epochs, bool shrinking,
                         std::uint64_t seed, int n_threads, const py::object& row_C_or_none) {
  require(X.ndim() == 2, "X: expected a 2-d array (N, D)");
  const index_t N = X.shape(0), D = X.shape(1);
  require(alpha.ndim() == 2 && alpha.shape(0) == N && alpha.writeable(),
          "alpha: expected a writeable (N, K) array");
  const index_t K = alpha.shape(1);
  require(W.ndim() == 2 && W.shape(0) == K && W.shape(1) == D && W.writeable(),
          "W: expected a writeable (K, D) array");
  require(lin.ndim() == 2 && lin.shape(0) == N && lin.shape(1) == K, "lin: expected (N, K)");
  const carray<double> sign = optional_sign(sign_or_none, N, K);
  const carray<double> row_C = optional_row_C(row_C_or_none, N);
  auto opt = cd_options(loss, C, tol, max_epochs, shrinking, seed);
  if (!row_C_or_none.is_none()) opt.row_C = row_C.data();
  dccnn::CdResult r;
  const T* x = X.data();
  const double *l = lin.data(), *sg = sign_or_none.is_none() ? nullptr : sign.data();
  double *a = alpha.mutable_data(), *wp = W.mutable_data();
  run_without_gil([&](const dccnn::InterruptCheck& check) {
    r = dccnn::dual_cd_linear<T>(x, N, D, K, sg, l, a, wp, opt, n_threads, check);
  });
  return cd_result(r);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dccnn compiled core (C++/OpenMP)";
  m.def("extract_patches", &extract_patches<float>, py::arg("X"), py::arg("size"),
        py::arg("stride"), py::arg("padding"), py::arg("n_threads"));
  m.def("extract_patches", &extract_patches<double>, py::arg("X"), py::arg("size"),
        py::arg("stride"), py::arg("padding"), py::arg("n_threads"));
  m.def("normalize_patches", &normalize_patches<float>, py::arg("Z").noconvert(),
        py::arg("center"), py::arg("scale"), py::arg("eps"), py::arg("n_threads"));
  m.def("normalize_patches", &normalize_patches<double>, py::arg("Z").noconvert(),
        py::arg("center"), py::arg("scale"), py::arg("eps"), py::arg("n_threads"));
  m.def("kernel_matrix", &kernel_matrix<float>, py::arg("Z1").noconvert(),
        py::arg("Z2").noconvert(), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("n_threads"));
  m.def("kernel_matrix", &kernel_matrix<double>, py::arg("Z1").noconvert(),
        py::arg("Z2").noconvert(), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("n_threads"));
  m.def("pooled_kernel_blocks", &pooled_kernel_blocks<float>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("n_threads"));
  m.def("pooled_kernel_blocks", &pooled_kernel_blocks<double>, py::arg("Z1").noconvert(),
        py::arg("Z2"), py::arg("position_ptr"), py::arg("position_window"),
        py::arg("n_windows"), py::arg("kind"), py::arg("gamma"), py::arg("degree"),
        py::arg("coef0"), py::arg("constant"), py::arg("n_threads"));
  m.def("dual_cd_dense", &dual_cd_dense, py::arg("gram").noconvert(), py::arg("sign"),
        py::arg("lin").noconvert(), py::arg("alpha").noconvert(), py::arg("G").noconvert(),
        py::arg("loss"), py::arg("C"), py::arg("tol"), py::arg("max_epochs"),
        py::arg("shrinking"), py::arg("seed"), py::arg("n_threads"), py::arg("row_C") = py::none());
  m.def("dual_cd_linear", &dual_cd_linear<float>, py::arg("X").noconvert(), py::arg("sign"),
        py::arg("lin").noconvert(), py::arg("alpha").noconvert(), py::arg("W").noconvert(),
        py::arg("loss"), py::arg("C"), py::arg("tol"), py::arg("max_epochs"),
        py::arg("shrinking"), py::arg("seed"), py::arg("n_threads"), py::arg("row_C") = py::none());
  m.def("dual_cd_linear", &dual_cd_linear<double>, py::arg("X").noconvert(), py::arg("sign"),
        py::arg("lin").noconvert(), py::arg("alpha").noconvert(), py::arg("W").noconvert(),
        py::arg("loss"), py::arg("C"), py::arg("tol"), py::arg("max_epochs"),
        py::arg("shrinking"), py::arg("seed"), py::arg("n_threads"), py::arg("row_C") = py::none());
  m.def("tile_engine", &dccnn::tile_engine_name,
        "Instruction set the kernel tiles run on: avx512, avx2 or generic");
  m.def("openmp_enabled", [] {
#ifdef DCCNN_HAVE_OPENMP
    return true;
#else
    return false;
#endif
  });
}
