"""ppdistill: PaddlePaddle-native knowledge distillation for OCR."""
# paddle 2.6's wheel and pyclipper's clash when pyclipper is loaded second (segfault in zlib's
# inflateReset2 on import); loading pyclipper first avoids it. Import ppdistill before paddle.
import pyclipper  # noqa: F401

# Importing ppdistill changes no process-wide state (environment, threads, warning filters):
# the tools call ppdistill.utils.cpu.setup_tool_process() in their entry points. The cpu module
# is imported here only so it records the user's thread settings before paddle changes them.
from ppdistill.utils import cpu as _cpu  # noqa: F401,E402

__version__ = "0.1.0"
