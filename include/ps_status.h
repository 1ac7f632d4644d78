/* Status codes returned by pstream's nogil C and Cython code.
 *
 * C code never raises: it returns one of these and writes results through
 * out-parameters. pstream/_corelib/errors.pxi is the one place that turns a
 * status into a pstream.errors exception.
 */
#ifndef PS_STATUS_H
#define PS_STATUS_H

typedef enum {
    PS_OK = 0,
    PS_ERR_SHORT_BUFFER = 1,      /* fewer bytes than a header or the declared length */
    PS_ERR_BAD_MAGIC = 2,         /* magic byte is not 2 */
    PS_ERR_LENGTH_MISMATCH = 3,   /* batch_length disagrees with the bytes present */
    PS_ERR_CRC_MISMATCH = 4,      /* stored CRC-32C != computed */
    PS_ERR_BAD_VARINT = 5,        /* varint longer than allowed or truncated */
    PS_ERR_RECORD_COUNT = 6,      /* record count disagrees with the records present */
    PS_ERR_COMPRESSION = 7,       /* compressed payload cannot be decoded */
    PS_ERR_BAD_RECORD = 8,        /* a record's own lengths are inconsistent */
    PS_ERR_IO = 9,                /* a system call failed; errno says which */
    PS_ERR_NO_MEMORY = 10,
    PS_ERR_TOO_LARGE = 11,        /* batch larger than the configured maximum */
    PS_ERR_CLOSED = 12,           /* the log or shard is closed */
    PS_ERR_OFFSET_GAP = 13,       /* a replica's batch does not start at the log end offset */
} ps_status;

#endif
