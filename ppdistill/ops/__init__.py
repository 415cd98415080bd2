"""ppdistill's own multi-threaded CPU kernels (paddle custom ops) with paddle fall-backs."""
from ppdistill.ops.functional import (  # noqa: F401
    conv_bn_act, dml_softmax_sum, fused_path_applies, is_depthwise, is_pointwise)
from ppdistill.ops.loader import cpu_kernels, kernels_enabled, unavailable_reason  # noqa: F401
from ppdistill.ops.rep_layer import rep_layer_forward, rep_layer_plan  # noqa: F401
