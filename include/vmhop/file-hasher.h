/* file-hasher: the tree digest (stream.h, STREAM_FEAT_DIGEST_TREE) of a
 * file being written, taken by threads that read its chunks back (from the
 * page cache) as the writer reports them written, and start their
 * writeback on the way. A checkpoint's digest is the costliest pass over
 * its bytes; this takes it off the thread that writes them and spreads it
 * over the CPUs. */
#ifndef VMHOP_FILE_HASHER_H
#define VMHOP_FILE_HASHER_H

#include <stdint.h>

#include "vmhop/err.h"

struct file_hasher;

/* Starts the threads over fd (kept open by the caller until __free). */
int file_hasher__start(struct file_hasher **out, int fd, struct err *e);
/* Bytes [0, end) of the file are written: the thread may read them. */
void file_hasher__wrote(struct file_hasher *h, uint64_t end);
/* Waits for the digest of bytes [0, len), all of them reported written. */
int file_hasher__final(struct file_hasher *h, uint64_t len, uint8_t md[32], struct err *e);
/* Stops the threads (whatever they were doing) and frees it. NULL is fine. */
void file_hasher__free(struct file_hasher *h);

#endif
