// Patch kernels k(z, z') of SPEC §1, described by value so that every back-end agrees.
#pragma once

namespace dccnn {

enum class KernelKind : int { rbf = 0, inverse_polynomial = 1, polynomial = 2, linear = 3 };

// Largest polynomial degree: a value costs degree - 1 multiplications in the compiled loops,
// so 2^31 - 1 ran for minutes past Ctrl-C, and beyond a few dozen the kernel is numerically a
// step function anyway.
constexpr int kMaxDegree = 100;

struct KernelSpec {
  KernelKind kind = KernelKind::rbf;
  double gamma = 1.0;     // rbf: exp(-gamma ||z - z'||^2)
  int degree = 2;         // polynomial: (<z, z'> + coef0)^degree
  double coef0 = 1.0;
  double constant = 0.0;  // b0 >= 0 added to every kernel value
};

// Throws std::invalid_argument when the parameters are outside the kernel's domain.
void validate(const KernelSpec& spec);

}  // namespace dccnn
