"""Neural networks of cryomine: DSM-Net (and its variants), the DSRF3D-v2 / SSN3D-ED baselines, and the
learned picker's 3-D U-Net (:class:`PickerUNet`).

Typical use::

    from cryomine.models import ModelConfig, build_model
    cfg = ModelConfig("dsmnet", n_classes=22)          # or "cls", "seg", "cls+rec", "cls+seg", baselines
    model = build_model(cfg)
    out = model(x)                                     # x: (n, 1, d, h, w) float tensor
    out.logits, out.seg_logits, out.recon, out.features  # None where the variant lacks the head
    p = out.class_proba()                              # softmax, float32 (forward returns logits only)

Save ``cfg.to_dict()`` as JSON beside the weights and rebuild with ``build_model(ModelConfig.from_dict(d))``.
"""

from __future__ import annotations

from cryomine.models.baselines import SSN3DED, DSRF3Dv2
from cryomine.models.blocks import ModelOutput, check_input
from cryomine.models.build import build_model, check_model_memory, parameter_count
from cryomine.models.config import MODEL_NAMES, ModelConfig
from cryomine.models.dsmnet import DSMNet
from cryomine.models.flops import (
    benchmark_throughput,
    count_forward_flops,
    count_parameters,
    fuse_batchnorm,
    infer,
    keep_freed_memory,
    prepare_for_inference,
)
from cryomine.models.picker import PickerConfig, PickerUNet, receptive_radius

__all__ = [
    "MODEL_NAMES",
    "DSMNet",
    "DSRF3Dv2",
    "ModelConfig",
    "ModelOutput",
    "PickerConfig",
    "PickerUNet",
    "SSN3DED",
    "benchmark_throughput",
    "build_model",
    "check_model_memory",
    "parameter_count",
    "check_input",
    "count_forward_flops",
    "count_parameters",
    "fuse_batchnorm",
    "infer",
    "keep_freed_memory",
    "prepare_for_inference",
    "receptive_radius",
]
