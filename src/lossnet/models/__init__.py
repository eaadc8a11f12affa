"""Models trained with loss networks: image/feature encoders and decoders, autoencoders, VAEs."""

from lossnet.models.autoencoder import (
    Autoencoder,
    FeatureDecoder,
    FeatureEncoder,
    ImageDecoder,
    ImageEncoder,
)
from lossnet.models.simple_cnn import SimpleCNN

__all__ = ["Autoencoder", "FeatureDecoder", "FeatureEncoder", "ImageDecoder", "ImageEncoder", "SimpleCNN"]
