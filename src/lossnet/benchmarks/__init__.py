"""The four benchmarks of the systematic analysis, each a module that registers itself with
:mod:`lossnet.benchmarks.base` (``lossnet sweep BENCHMARK``):

* :mod:`~lossnet.benchmarks.similarity` -- benchmark 1, perceptual similarity (BAPPS 2AFC/JND, or the proxy);
* :mod:`~lossnet.benchmarks.super_resolution` -- benchmark 2, Johnson et al.'s SR network, PSNR/SSIM;
* :mod:`~lossnet.benchmarks.delineation` -- benchmark 3, iterative U-Net with a topology loss;
* :mod:`~lossnet.benchmarks.autoencoding` -- benchmark 4, autoencoders scored by downstream probes.

:mod:`~lossnet.benchmarks.sweep` runs any of them over many loss networks.
"""

from lossnet.benchmarks import autoencoding, delineation, similarity, super_resolution  # noqa: F401 (register)
from lossnet.benchmarks.base import BENCHMARKS, Benchmark, register_benchmark

__all__ = ["BENCHMARKS", "Benchmark", "register_benchmark"]
