"""Winograd F(2x2, 3x3) against im2col on 3x3 stride-1 convolutions: forward and backward of
one ``nn.Conv2d`` layer per algorithm, medians of 7 after one warm-up, 2 threads, NumPy.
``python benchmarks/conv3x3.py``; the results of 2026-11-30 are in NOTES.md ("Round three")."""

import statistics
import time

import numpy as np

from netlab import backend, nn

# (in channels, out channels, side, batch): fast_cnn's 3x3 layer, then wider ones
SHAPES = [(8, 24, 14, 64), (8, 24, 14, 256), (32, 64, 14, 256), (64, 64, 14, 256), (32, 32, 28, 64)]


def timed(layer, x, repeats: int = 7) -> tuple[float, float]:
    dy = np.ones_like(layer.forward(x))
    layer.backward(dy)
    forward, backward = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        layer.forward(x)
        middle = time.perf_counter()
        layer.backward(dy)
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return 1e3 * statistics.median(forward), 1e3 * statistics.median(backward)


def main() -> None:
    xp = backend.namespace("numpy")
    backend.set_threads(2)
    rng = np.random.default_rng(0)
    for cin, cout, side, batch in SHAPES:
        x = xp.asarray(rng.standard_normal((batch, cin, side, side), dtype=np.float32))
        ms = {algo: timed(nn.Conv2d(cin, cout, 3, 1, 1, algorithm=algo).to(xp), x) for algo in ("im2col", "winograd")}
        (fi, bi), (fw, bw) = ms["im2col"], ms["winograd"]
        print(f"{cin:3d} -> {cout:3d}, {side}x{side}, batch {batch:3d}: im2col {fi:7.2f} / {bi:7.2f} ms, "
              f"winograd {fw:7.2f} / {bw:7.2f} ms (forward / backward): winograd takes {(fw + bw) / (fi + bi):.2f}x")


if __name__ == "__main__":
    main()
