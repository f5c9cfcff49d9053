/* The stream digest of the DIGEST feature, taken in one pass: plain
 * SHA-256, or with DIGEST_TREE the SHA-256 of the chunks' SHA-256s
 * (stream.h). Writers and readers feed every stream byte before the digest
 * through __update; file-hasher.h takes the tree form with threads. */
#ifndef VMHOP_STREAM_HASH_H
#define VMHOP_STREAM_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stream_hash {
	void *outer;		/* EVP_MD_CTX *: the digest, or the tree's root */
	void *chunk;		/* EVP_MD_CTX *: the tree's current chunk */
	uint64_t fill;		/* bytes in the current chunk */
	bool tree;
};

/* 0, or -ENOMEM. */
int stream_hash__init(struct stream_hash *h, bool tree);
void stream_hash__update(struct stream_hash *h, const void *p, size_t n);
/* 0 with the 32-byte digest in md, or -EIO; the hash is done after it. */
int stream_hash__final(struct stream_hash *h, uint8_t md[32]);
void stream_hash__free(struct stream_hash *h);
bool stream_hash__active(const struct stream_hash *h);

#endif
