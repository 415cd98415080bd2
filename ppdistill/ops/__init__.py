"""ppdistill's own multi-threaded CPU kernels (paddle custom ops) with paddle fall-backs."""
from ppdistill.ops.functional import conv_bn_act, fused_path_applies, is_depthwise, is_pointwise  # noqa: F401,E501
from ppdistill.ops.loader import cpu_kernels, kernels_enabled, unavailable_reason  # noqa: F401
