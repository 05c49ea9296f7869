"""`mx.base.MXNetError`: the class MXNet scripts catch (d2l's try_gpu), here dualgraph's base error."""
from ..errors import DualgraphError

MXNetError = DualgraphError
