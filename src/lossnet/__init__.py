"""lossnet: loss networks for PyTorch.

Pretrained image networks whose deep features train or judge other models: deep perceptual
(PS) and feature-prediction (FP) losses, encoder pretraining, downstream probes and the
benchmarks to choose a loss network.
"""

__version__ = "0.1.0"
