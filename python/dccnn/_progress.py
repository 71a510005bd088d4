"""What a fit tells its user while it runs: the user's callback, one line per outer iteration
(verbose >= 1, at most one per ``LINE_INTERVAL`` seconds so that fast solvers do not flood the
terminal) and a tqdm bar of the duality gap's progress towards ``tol`` on a log scale."""

import logging
import math
import time

logger = logging.getLogger("dccnn")

LINE_INTERVAL = 1.0


class FitProgress:
    def __init__(self, tol, verbose=0, callback=None, label="layer"):
        self.tol, self.verbose, self.callback, self.label = tol, verbose, callback, label
        self.first_gap = None
        self.last_line = -math.inf
        self.bar = None
        if verbose:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional: lines only
                tqdm = None
            if tqdm is not None:
                # disable=None: no bar when stderr is not a terminal (logs, CI)
                self.bar = tqdm(total=100, desc=f"[dccnn] {label}", unit="%", leave=False,
                                bar_format="{desc}: {bar} gap {postfix}", disable=None)

    def __call__(self, iteration, gap, elapsed):
        if self.callback is not None:
            self.callback(iteration, gap, elapsed)
        logger.debug("%s iteration %d: gap %.3e, %.2fs", self.label, iteration, gap, elapsed)
        if not self.verbose:
            return
        now = time.perf_counter()
        if now - self.last_line >= LINE_INTERVAL or gap <= self.tol:
            self.last_line = now
            line = f"[dccnn] {self.label} iteration {iteration}: gap {gap:.3e}, {elapsed:.2f}s"
            if self.bar is not None:
                self.bar.write(line)
            else:
                print(line, flush=True)
        if self.bar is not None and gap > 0:
            if self.first_gap is None:
                self.first_gap = max(gap, self.tol * 10)
            span = math.log(self.first_gap / self.tol)
            done = math.log(self.first_gap / max(gap, self.tol)) / span if span > 0 else 1.0
            self.bar.n = round(100 * min(max(done, 0.0), 1.0))
            self.bar.set_postfix_str(f"{gap:.2e}", refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
