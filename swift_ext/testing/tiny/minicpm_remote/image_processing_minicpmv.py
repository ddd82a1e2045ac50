"""A tiny MiniCPM-V 4.5 checkpoint's image processor: OpenBMB's published ``MiniCPMVImageProcessor``
plus the ``temporal_ids`` MiniCPM-V 4.5's own processor also returns.

Copied into the tiny ``minicpmv4_5`` checkpoint beside OpenBMB's ``processing_minicpmo.py`` (vendored
verbatim in tests/data/minicpmv2_6) by ``swift_ext.testing.tiny.minicpmv2_6``; never imported by
swift-ext. ms-swift's ``MiniCPMV4_5Template`` reads ``temporal_ids``; for still images MiniCPM-V 4.5's
``preprocess`` gives each view ``[-1]`` (no frame group) and skips none. The slicing is the
published class's, untouched.
"""
from .processing_minicpmo import MiniCPMOBatchFeature, MiniCPMVImageProcessor


class MiniCPMV4_5ImageProcessor(MiniCPMVImageProcessor):

    def preprocess(self, images, do_pad=True, max_slice_nums=None, temporal_ids=None, return_tensors=None,
                   **kwargs):
        if temporal_ids is not None:
            raise ValueError('the tiny MiniCPM-V 4.5 processor slices still images only (no temporal_ids).')
        out = super().preprocess(images, do_pad=do_pad, max_slice_nums=max_slice_nums, return_tensors=None)
        data = dict(out.data)
        data['temporal_ids'] = [[[-1]] * len(sizes) for sizes in data['tgt_sizes']]
        data['skip_image_idx'] = [[] for _ in data['tgt_sizes']]
        return MiniCPMOBatchFeature(data=data, tensor_type=return_tensors)
