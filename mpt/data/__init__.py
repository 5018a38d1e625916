"""Image classification datasets for `mpt`: built-ins, loaders for users' data, class helpers.

`load_dataset(spec)` is the one entry point the CLI and the worker use; the rest is for
building, checking and reshaping datasets by hand. `decode_image` and `ImageTreeReader` are
the one image decoder and image-tree reader, shared with the service's uploads and /predict.
"""

from mpt.data.cifar import load_cifar
from mpt.data.classes import align_classes, parse_class_selection, split_classes, with_validation
from mpt.data.dataset import AUGMENTATIONS, ImageDataset, Split
from mpt.data.digits import make_digits
from mpt.data.glyphs import GLYPH_CLASSES, GLYPHS_VERSION, make_glyphs
from mpt.data.image_tree import ImageTreeError, ImageTreeReader, TreeOptions
from mpt.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image, image_pixels
from mpt.data.loaders import default_cache_dir, load_dataset, load_image_folder
from mpt.data.npz import load_npz, save_npz

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_MAX_PIXELS",
    "GLYPHS_VERSION",
    "GLYPH_CLASSES",
    "ImageDataset",
    "ImageError",
    "ImageTreeError",
    "ImageTreeReader",
    "Split",
    "TreeOptions",
    "align_classes",
    "decode_image",
    "default_cache_dir",
    "image_pixels",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "make_digits",
    "make_glyphs",
    "parse_class_selection",
    "save_npz",
    "split_classes",
    "with_validation",
]
