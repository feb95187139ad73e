"""Memory mechanisms, one pure function per paper equation (see each module's docstring for the source)."""

from mem_tutorial.memory.access import read, write
from mem_tutorial.memory.addressing import COSINE_EPS, content_weighting, cosine_similarity
from mem_tutorial.memory.addressing import SHARPEN_EPS, interpolate, ntm_addressing, sharpen, shift

__all__ = ["COSINE_EPS", "content_weighting", "cosine_similarity", "read", "write"]
__all__ += ["SHARPEN_EPS", "interpolate", "ntm_addressing", "sharpen", "shift"]

# Chapter 3 (DNC): dynamic allocation and temporal links.
from mem_tutorial.memory.allocation import (  # noqa: E402
    allocation_weighting,
    retention_vector,
    usage_update,
    write_weighting,
)
from mem_tutorial.memory.linkage import (  # noqa: E402
    READ_MODES,
    directional_weightings,
    precedence_update,
    read_weighting,
    temporal_link,
    temporal_link_update,
)

__all__ += [
    "READ_MODES",
    "allocation_weighting",
    "directional_weightings",
    "precedence_update",
    "read_weighting",
    "retention_vector",
    "temporal_link",
    "temporal_link_update",
    "usage_update",
    "write_weighting",
]

# Chapter 5 (KV-MemNN): key addressing and value reading.
from mem_tutorial.memory.keyvalue import candidate_scores, hop_update, key_addressing, value_reading  # noqa: E402

__all__ += ["candidate_scores", "hop_update", "key_addressing", "value_reading"]

# Chapter 6: sparse access (Rae et al. 2016).
from mem_tutorial.memory.sparse import SparseWeights, sparse_read, sparse_write, topk_read  # noqa: E402

__all__ += ["SparseWeights", "sparse_read", "sparse_write", "topk_read"]
