"""Memory mechanisms, one pure function per paper equation (see each module's docstring for the source)."""

from mem_tutorial.memory.access import read, write
from mem_tutorial.memory.addressing import COSINE_EPS, content_weighting, cosine_similarity
from mem_tutorial.memory.addressing import SHARPEN_EPS, interpolate, ntm_addressing, sharpen, shift

__all__ = ["COSINE_EPS", "content_weighting", "cosine_similarity", "read", "write"]
__all__ += ["SHARPEN_EPS", "interpolate", "ntm_addressing", "sharpen", "shift"]
