/* Plain or tree SHA-256 of a stream, in one sequential pass. */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "vmhop/stream-hash.h"
#include "vmhop/stream.h"
#include "vmhop/util.h"

static EVP_MD_CTX *sha256_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		c = NULL;
	}
	return c;
}

int stream_hash__init(struct stream_hash *h, bool tree)
{
	memset(h, 0, sizeof(*h));
	h->tree = tree;
	h->outer = sha256_new();
	if (tree)
		h->chunk = sha256_new();
	if (!h->outer || (tree && !h->chunk)) {
		stream_hash__free(h);
		return -ENOMEM;
	}
	return 0;
}

bool stream_hash__active(const struct stream_hash *h)
{
	return h->outer != NULL;
}

/* The chunk's digest joins the root's input; the next chunk starts. */
static int close_chunk(struct stream_hash *h)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (EVP_DigestFinal_ex(h->chunk, md, &n) != 1 || n != 32 ||
	    EVP_DigestUpdate(h->outer, md, n) != 1 ||
	    EVP_DigestInit_ex(h->chunk, EVP_sha256(), NULL) != 1)
		return -EIO;
	h->fill = 0;
	return 0;
}

void stream_hash__update(struct stream_hash *h, const void *p, size_t n)
{
	const uint8_t *s = p;
	if (!h->outer || !n)
		return;
	if (!h->tree) {
		EVP_DigestUpdate(h->outer, s, n);
		return;
	}
	while (n) {
		size_t c = (size_t)MIN((uint64_t)n, STREAM_TREE_CHUNK - h->fill);
		EVP_DigestUpdate(h->chunk, s, c);
		h->fill += c;
		s += c;
		n -= c;
		if (h->fill == STREAM_TREE_CHUNK)
			(void)close_chunk(h);	/* a failure shows as a wrong digest */
	}
}

int stream_hash__final(struct stream_hash *h, uint8_t md[32])
{
	int rc = -EIO;
	unsigned n = 0;
	if (h->outer && (!h->tree || !h->fill || close_chunk(h) == 0) &&
	    EVP_DigestFinal_ex(h->outer, md, &n) == 1 && n == 32)
		rc = 0;
	stream_hash__free(h);
	return rc;
}

void stream_hash__free(struct stream_hash *h)
{
	EVP_MD_CTX_free(h->outer);
	EVP_MD_CTX_free(h->chunk);
	h->outer = h->chunk = NULL;
}
