/* The 40-byte stream header, identical in every format version:
 *   0  magic "VMHOPSTR"      8  u16 format   10 u16 release ordinal
 *   12 u32 features          16 char release[16] (NUL-padded)
 *   32 u32 reserved (0)      36 u32 crc32c of bytes 0..35 */
#include <string.h>

#include "vmhop/stream.h"

void stream__header_encode(const struct stream_header *h,
			   uint8_t out[STREAM_HEADER_SIZE])
{
	memset(out, 0, STREAM_HEADER_SIZE);
	memcpy(out, STREAM_MAGIC, STREAM_MAGIC_LEN);
	stream__le16(out + 8, h->format);
	stream__le16(out + 10, h->release_ordinal);
	stream__le32(out + 12, h->features);
	size_t n = strnlen(h->release, STREAM_RELEASE_NAME_MAX - 1);
	memcpy(out + 16, h->release, n);
	stream__le32(out + 36, crc32c__update(0, out, 36));
}

static bool name_ok(const uint8_t *p)
{
	size_t i = 0;
	for (; i < STREAM_RELEASE_NAME_MAX && p[i]; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	if (i == 0 || i == STREAM_RELEASE_NAME_MAX)
		return false;
	for (; i < STREAM_RELEASE_NAME_MAX; i++)
		if (p[i])
			return false;
	return true;
}

int stream__header_decode(const uint8_t in[STREAM_HEADER_SIZE],
			  struct stream_header *h, struct err *e)
{
	if (memcmp(in, STREAM_MAGIC, STREAM_MAGIC_LEN))
		return err__set(e, EPROTO, "offset 0: bad magic: not a vmhop stream");
	uint32_t want = stream__rd32(in + 36), got = crc32c__update(0, in, 36);
	if (want != got)
		return err__set(e, EBADMSG,
				"offset 36: header checksum mismatch (stored %08x, computed %08x)",
				want, got);
	if (stream__rd32(in + 32))
		return err__set(e, EPROTO, "offset 32: reserved header field is not zero");
	if (!name_ok(in + 16))
		return err__set(e, EPROTO, "offset 16: malformed release level name");
	memset(h, 0, sizeof(*h));
	h->format = stream__rd16(in + 8);
	h->release_ordinal = stream__rd16(in + 10);
	h->features = stream__rd32(in + 12);
	memcpy(h->release, in + 16, STREAM_RELEASE_NAME_MAX);
	h->release[STREAM_RELEASE_NAME_MAX - 1] = '\0';
	return 0;
}
