"""A stand-in for the extension dccnn._cuda that runs on the CPU, so that the Python side of
device="cuda" (which routine is called with which arrays, and what is done with the result)
is tested on machines without a GPU. It keeps the extension's contract (cuda_kernels.hpp):
blocks from the CPU core, the on-device reductions as explicit einsums over them. The
kernels themselves are tested against the CPU core on a GPU (tests marked ``cuda``)."""

import weakref

import numpy as np

from dccnn._backend import get_backend


class FakeCuda:
    def __init__(self):
        self.calls = []  # names of the routines called, in order
        self.held = []

    def device_count(self):
        return 1

    def unavailable_reason(self):
        return ""

    def _blocks(self, Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant):
        return get_backend("auto").pooled_kernel_blocks(Z1, Z2, ptr, win, Q, kind, gamma,
                                                        degree, coef0, constant, 1)

    def kernel_matrix(self, Z1, Z2, kind, gamma, degree, coef0, constant, budget=0):
        self.calls.append("kernel_matrix")
        out = get_backend("auto").kernel_matrix(Z1, Z1 if Z2 is None else Z2, kind, gamma,
                                                degree, coef0, constant, 1)
        return out, {}

    def pooled_kernel_blocks(self, Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant,
                             budget=0, discard_output=False):
        self.calls.append("pooled_kernel_blocks")
        return self._blocks(Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant), {}

    def pooled_kernel_cross(self, Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant,
                            beta, budget=0):
        self.calls.append("pooled_kernel_cross")
        blocks = self._blocks(Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant)
        n1, K = Z1.shape[0], beta.shape[1]
        H = np.einsum("ijqr,jc->iqrc", blocks.astype(np.float64), beta)
        return H.reshape(n1, Q, Q * K), {}

    def pooled_kernel_traces(self, Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant,
                             budget=0):
        self.calls.append("pooled_kernel_traces")
        blocks = self._blocks(Z1, Z2, ptr, win, Q, kind, gamma, degree, coef0, constant)
        return np.einsum("ijqq->ij", blocks.astype(np.float64)), {}

    def held_blocks(self, Z, ptr, win, Q, kind, gamma, degree, coef0, constant, budget=0):
        """Held when the blocks take at most half of a budget (0: no budget, always)."""
        if budget and Z.shape[0] ** 2 * Q * Q * Z.itemsize > budget / 2:
            raise MemoryError("holding the pooled kernel blocks: over half the budget")
        self.calls.append("held_blocks")
        held = FakeHeldBlocks(self, self._blocks(Z, None, ptr, win, Q, kind, gamma, degree,
                                                 coef0, constant).astype(np.float64))
        self.held.append(weakref.ref(held))  # what is still alive (device memory on a GPU)
        return held


class FakeHeldBlocks:
    def __init__(self, fake, blocks):
        self.fake, self.blocks = fake, blocks

    def cross(self, beta):
        self.fake.calls.append("held_cross")
        n, _, Q, _ = self.blocks.shape
        return np.einsum("ijqr,jc->iqrc", self.blocks, beta).reshape(n, Q, -1), {}

    def traces(self):
        self.fake.calls.append("held_traces")
        return np.einsum("ijqq->ij", self.blocks), {}
