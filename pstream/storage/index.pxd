# Declarations of the sparse indexes (index.pxi).

cdef struct SparseIndex:
    uint32_t *rel
    uint32_t *pos
    size_t n
    size_t cap
    int64_t *ts
    uint32_t *trel
    size_t tn
    size_t tcap
