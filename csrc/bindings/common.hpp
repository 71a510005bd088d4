// Helpers shared by the bindings of dccnn._core and dccnn._cuda.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "dccnn/common.hpp"
#include "dccnn/kernel_spec.hpp"

namespace dccnn_bindings {

template <class T>
using carray = pybind11::array_t<T, pybind11::array::c_style>;

inline void require(bool ok, const std::string& message) {
  if (!ok) throw pybind11::value_error(message);
}

inline dccnn::KernelSpec kernel_spec(int kind, double gamma, int degree, double coef0,
                                     double constant) {
  require(kind >= 0 && kind <= 3, "kernel: unknown kind " + std::to_string(kind));
  dccnn::KernelSpec s;
  s.kind = static_cast<dccnn::KernelKind>(kind);
  s.gamma = gamma;
  s.degree = degree;
  s.coef0 = coef0;
  s.constant = constant;
  return s;
}

// Checked arguments of a pooled-kernel-blocks call: Z1 (n1, P, d), an optional Z2 (n2, P, d)
// (None: Z2 = Z1, b = nullptr) and a CSR pooling map over the P positions.
template <class T>
struct PooledArgs {
  dccnn::index_t n1, n2, P, d;
  carray<T> Z2;  // keeps Z2 alive while b points into it
  const T* b = nullptr;
};

template <class T>
PooledArgs<T> check_pooled_args(const carray<T>& Z1, const pybind11::object& Z2_or_none,
                                const carray<dccnn::index_t>& position_ptr,
                                const carray<std::int32_t>& position_window) {
  require(Z1.ndim() == 3, "Z1: expected a 3-d array (n1, P, d)");
  PooledArgs<T> a;
  a.n1 = Z1.shape(0);
  a.P = Z1.shape(1);
  a.d = Z1.shape(2);
  a.n2 = a.n1;
  require(position_ptr.ndim() == 1 && position_ptr.shape(0) == a.P + 1,
          "pooling: position_ptr must have P + 1 entries");
  require(position_window.ndim() == 1 &&
              position_window.shape(0) == position_ptr.at(static_cast<pybind11::ssize_t>(a.P)),
          "pooling: position_window length must equal position_ptr[-1]");
  if (!Z2_or_none.is_none()) {
    a.Z2 = Z2_or_none.cast<carray<T>>();
    require(a.Z2.ndim() == 3 && a.Z2.shape(1) == a.P && a.Z2.shape(2) == a.d,
            "Z2: expected a 3-d array (n2, P, d) with the P and d of Z1");
    a.n2 = a.Z2.shape(0);
    a.b = a.Z2.data();
  }
  return a;
}

}  // namespace dccnn_bindings
