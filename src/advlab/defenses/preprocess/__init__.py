"""Input-transformation defenses (DESIGN §6): a transformation in front of a Classifier, itself a
:class:`~advlab.defenses.base.Defended` Classifier registered in ``advlab.defenses.defenses``.

========================  ==================  ========  ===================================
registry name             class               gradient  paper
========================  ==================  ========  ===================================
``gaussian-blur``         GaussianBlur        exact     classical smoothing preprocessor
``median``                MedianFilter        bpda      Xu, Evans & Qi 2018
``bit-depth``             BitDepth            bpda      Xu, Evans & Qi 2018; Guo et al. 2018
``jpeg``                  JPEG                bpda      Guo et al. 2018 (real Pillow codec)
``random-resize-pad``     RandomResizePad     eot       Xie et al. 2018
``crop-rescale``          CropRescale         eot       Guo et al. 2018
========================  ==================  ========  ===================================
"""

from advlab.defenses.preprocess._common import InputTransformDefense
from advlab.defenses.preprocess.filters import (
    GaussianBlur,
    MedianFilter,
    gaussian_kernel,
    median_filter,
    symmetric_pad,
)
from advlab.defenses.preprocess.quantize import JPEG, BitDepth, jpeg_compress, reduce_bit_depth
from advlab.defenses.preprocess.randomized import CropRescale, RandomResizePad

__all__ = [
    "JPEG",
    "BitDepth",
    "CropRescale",
    "GaussianBlur",
    "InputTransformDefense",
    "MedianFilter",
    "RandomResizePad",
    "gaussian_kernel",
    "jpeg_compress",
    "median_filter",
    "reduce_bit_depth",
    "symmetric_pad",
]
