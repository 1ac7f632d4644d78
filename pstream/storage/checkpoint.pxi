# The log start offset checkpoint of a partition (Kafka's log-start-offset-checkpoint): the
# first offset readers may ask for, moved by retention and DeleteRecords, read at open.


cdef int64_t checkpoint_read_log_start(Partition part) except -2:
    for name in _os.listdir(part.path):   # temporary files of writers a crash interrupted
        if name.startswith("log-start-offset.") and name.endswith(".tmp"):
            _os.unlink(_os.path.join(part.path, name))
    try:
        with open(_os.path.join(part.path, "log-start-offset")) as f:
            part.checkpoint_written = int(f.read().strip() or 0)
            return part.checkpoint_written
    except FileNotFoundError:
        return 0
    except (ValueError, UnicodeDecodeError):
        # Ignoring it would bring deleted records back to consumers: refuse to start instead.
        from pstream.storage.metadata import CorruptMetadataError, LOG_START_ADVICE
        raise CorruptMetadataError(_os.path.join(part.path, "log-start-offset"), "not a decimal offset",
                                   LOG_START_ADVICE) from None


cdef int checkpoint_write_log_start(Partition part) except -1:
    """Persists the current log start offset, durably before it returns.

    Writers may run at once (the retention thread, DeleteRecords on the disk pool, the
    group coordinator): each writes and fsyncs its own temporary file with no lock held,
    so none waits on another's fsync; checkpoint_lock covers only the compare and the
    rename, so the file never goes back to an older offset. Every writer fsyncs the
    directory after it, which also makes a newer rename by another writer durable.
    """
    value = ps_load_i64(&part.p.log_start_offset)
    tmp = _os.path.join(part.path, f"log-start-offset.{_threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{value}\n")
        f.flush()
        _os.fsync(f.fileno())
    with part.checkpoint_lock:
        newer = value > part.checkpoint_written
        if newer:
            _os.replace(tmp, _os.path.join(part.path, "log-start-offset"))
            part.checkpoint_written = value
    if not newer:   # a later offset is in place already
        _os.unlink(tmp)
    with nogil:
        fsync_directory(part.p.directory)
    return 0
