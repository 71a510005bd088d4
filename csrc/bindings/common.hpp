// Helpers shared by the bindings of dccnn._core and dccnn._cuda.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

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

}  // namespace dccnn_bindings
