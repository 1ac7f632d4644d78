# Fault injection for tests: arm the core's file calls to fail (include/ps_faults.h).
#
# Never armed unless a test calls arm_fault, or a broker is started with PSTREAM_FAULTS set
# (the broker reads it only when PSTREAM_ENABLE_FAULT_INJECTION=1 is set too).
#
#   PSTREAM_FAULTS="pwrite:ENOSPC:/orders/0/:count=-1; fdatasync:EIO:after=3"
#
# One fault per `;`: op (pwrite, fdatasync, open, rename, fallocate), errno name, then
# optional fields: a path substring (a partition's directory is "/TOPIC/PARTITION/"),
# after=N (let N matching calls through first), count=K (fail K calls; -1: every call).

import errno as _errno_names

_FAULT_OPS = {"pwrite": PS_FAULT_PWRITE, "fdatasync": PS_FAULT_FDATASYNC, "open": PS_FAULT_OPEN,
              "rename": PS_FAULT_RENAME, "fallocate": PS_FAULT_FALLOCATE}


def _errno_of(err):
    if isinstance(err, int):
        return err
    value = getattr(_errno_names, str(err).upper(), None)
    if not isinstance(value, int):
        raise ValueError(f"unknown errno name {err!r} (ENOSPC, EIO, EDQUOT, ...)")
    return value


def arm_fault(str op, err, *, str path_contains=None, str topic=None, partition=None, int after=0,
              count=1):
    """Makes the core's `op` calls fail with `err` (an errno number or name): on files whose path
    contains path_contains (or those of topic/partition: "/TOPIC/PARTITION/"; default every
    file), after `after` matching calls go through, for `count` calls (None or -1: for good).
    Returns the slot used; ValueError when the arguments are wrong or every slot is armed."""
    cdef int code = _errno_of(err)
    cdef int64_t times = -1 if count is None else count
    if op not in _FAULT_OPS:
        raise ValueError(f"unknown fault point {op!r}; one of {', '.join(_FAULT_OPS)}")
    if path_contains is None and topic is not None:
        path_contains = f"/{topic}/" if partition is None else f"/{topic}/{partition}/"
    match = _os.fsencode(path_contains or "")
    slot = ps_fault_arm(_FAULT_OPS[op], code, match, after, times)
    if slot < 0:
        raise ValueError(f"cannot arm fault {op}:{err} (bad count or path, or all slots armed)")
    return slot


def disarm_faults():
    """Disarms every fault point; returns how many failures they injected."""
    return ps_fault_disarm_all()


def fault_hits():
    """Failures injected so far by the armed fault points."""
    return ps_fault_hits()


def arm_faults_from_spec(str spec):
    """Arms the faults of a PSTREAM_FAULTS text (see the top of this fragment); returns their count."""
    armed = 0
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        fields = [f.strip() for f in item.split(":")]
        if len(fields) < 2:
            raise ValueError(f"fault {item!r}: expected OP:ERRNO[:PATH][:after=N][:count=K]")
        kwargs = {"path_contains": None, "after": 0, "count": 1}
        for field in fields[2:]:
            key, sep, value = field.partition("=")
            if sep and key in ("after", "count"):
                kwargs[key] = int(value)
            elif not sep:
                kwargs["path_contains"] = field
            else:
                raise ValueError(f"fault {item!r}: unknown field {field!r}")
        arm_fault(fields[0], fields[1], **kwargs)
        armed += 1
    return armed


def rename_file(src, dst):
    """os.rename through the `rename` fault point (for metadata files written atomically)."""
    cdef bytes a = _os.fsencode(src), b = _os.fsencode(dst)
    if ps_f_rename(a, b) != 0:
        raise_os_error(errno, "cannot rename", _os.fsdecode(a))


# Debug builds (PSTREAM_DEBUG_BUILD=1) check who holds each shard mutex (include/ps_lock.h).
LOCK_CHECKS = bool(PS_LOCK_CHECKS)


def _break_lock_contract():
    """Releases a mutex this thread does not hold: a debug build aborts with a message (tests)."""
    cdef ps_mutex m
    ps_mutex_init(&m)
    ps_mutex_unlock(&m)
    ps_mutex_destroy(&m)
