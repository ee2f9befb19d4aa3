"""One entry per operation: channel coupling, slicing, cost and graph label (see `registry`).

Importing this package registers every built-in op family; `register_op` adds your own. Ready-made channel
rules for custom layers: `creates` (conv/linear-like: new output channels from all inputs), `channelwise`
(per-channel parameters, channels pass through), `passthrough` (element-wise, no parameters) and `pins`
(keep the layer's channels whole).
"""

from . import activation, conv, elementwise, layout, linear, norm, pad, pooling, standardized  # noqa: F401  (registers them)
from .activation import passthrough
from .idmap import Ids
from .linear import creates
from .norm import channelwise, pins
from .registry import FUNCTION_OPS, MODULE_OPS, Call, Label, Op, load_optional, module_op, node_op, register_op

__all__ = ["FUNCTION_OPS", "MODULE_OPS", "Call", "Ids", "Label", "Op", "channelwise", "creates", "load_optional",
           "module_op", "node_op", "passthrough", "pins", "register_op"]
