"""Memory mechanisms, one pure function per paper equation (see each module's docstring for the source)."""

from mem_tutorial.memory.access import read, write
from mem_tutorial.memory.addressing import COSINE_EPS, content_weighting, cosine_similarity
from mem_tutorial.memory.addressing import SHARPEN_EPS, interpolate, ntm_addressing, sharpen, shift

__all__ = ["COSINE_EPS", "content_weighting", "cosine_similarity", "read", "write"]

# Chapter 6: sparse access (Rae et al. 2016).
from mem_tutorial.memory.sparse import SparseWeights, sparse_read, sparse_write, topk_read  # noqa: E402

__all__ += ["SparseWeights", "sparse_read", "sparse_write", "topk_read"]

from mem_tutorial.memory.keyvalue import candidate_scores, hop_update, key_addressing, value_reading  # noqa: E402

__all__ += ["candidate_scores", "hop_update", "key_addressing", "value_reading"]
__all__ += ["SHARPEN_EPS", "interpolate", "ntm_addressing", "sharpen", "shift"]
