#include "dccnn/kernel_spec.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dccnn {

void validate(const KernelSpec& s) {
  if (!std::isfinite(s.gamma) || !std::isfinite(s.coef0) || !std::isfinite(s.constant))
    throw std::invalid_argument("kernel parameters must be finite");
  if (s.constant < 0) throw std::invalid_argument("constant: must be >= 0");
  if (s.kind == KernelKind::rbf && s.gamma <= 0) throw std::invalid_argument("gamma: must be > 0");
  if (s.kind == KernelKind::polynomial && (s.degree < 1 || s.degree > kMaxDegree))
    throw std::invalid_argument("degree: must be between 1 and " + std::to_string(kMaxDegree));
  if (static_cast<int>(s.kind) < 0 || static_cast<int>(s.kind) > 3)
    throw std::invalid_argument("kernel: unknown kind");
}

}  // namespace dccnn
