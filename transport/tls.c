/* tls: channels: TLS 1.3 (OpenSSL 3) over a TCP connection, mutual X.509
 * authentication. Each side loads the CA that signed its peer and its own
 * certificate and key; the connecting side checks the listener's certificate
 * against the name it expects, the listener checks the client's subject
 * against its allow list (in the verify callback, so a refused client gets a
 * TLS alert). No state outside the channel and its listener: an SSL_CTX per
 * listener (shared by its channels through a reference) or per connecting
 * channel, and a socket BIO of our own that sends with MSG_NOSIGNAL, so a
 * peer that went away gives -EPIPE, never SIGPIPE, as on tcp:.
 *
 * The connecting side waits after its handshake for the listener's verdict
 * on its certificate: in TLS 1.3 the client's handshake completes before the
 * server has checked it. The listener sends one session ticket once it has
 * accepted the client (nobody resumes with it); a refusal arrives as an
 * alert instead, and both become connect's result with a message. */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "transport/transport.h"
#include "vmhop/util.h"

#define DEFAULT_HANDSHAKE_MS 15000
#define BIO_TYPE_VMHOP (0x7e | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR)
/* One SSL_write of at most this much is gathered (its records and their
 * overhead) and handed to the socket in one send(): a send per 16 KiB
 * record cost the sender more than the encryption did. */
#define WRITE_GATHER (256 * 1024)
#define WBUF_SIZE (WRITE_GATHER + 64 * 1024)
/* Socket reads this large feed many records: two recv() per record (header,
 * then body) cost the receiver more than the decryption did. */
#define RBUF_SIZE (256 * 1024)

struct channel_tls_server {
	SSL_CTX *ctx;
	char *allow[CHANNEL_TLS_ALLOW_MAX];
	unsigned nr_allow;
	int handshake_ms;
	char ca[256];
};

struct channel_tls {
	SSL_CTX *ctx;			/* a reference */
	SSL *ssl;
	BIO_METHOD *meth;
	int fd;				/* the BIO's socket */
	int sys_err;			/* errno of the last failed socket call */
	int first;			/* first byte received, -1: none yet */
	bool eof;			/* the socket read an end */
	bool server;
	bool ticket;			/* client: the listener accepted us */
	bool established;
	bool fatal;			/* a fatal error: no close_notify then */
	bool gather;			/* inside tls_send: records go to wbuf */
	uint8_t *wbuf;			/* records not yet on the socket */
	size_t wlen, woff;		/* wbuf[woff..wlen) is still to send */
	size_t owed;			/* bytes an SSL_write took whose records
					 * are still in wbuf: the count the
					 * caller's retry is answered with */
	uint8_t *rbuf;			/* bytes read ahead from the socket */
	size_t rlen, roff;		/* rbuf[roff..rlen) not yet taken */
	const struct channel_tls_server *srv;	/* during the server's handshake */
	char peer[CHANNEL_URI_MAX + 16];	/* "tls:HOST:PORT" or "the client tls:..." */
	char ca[256];			/* for messages */
	char name[256];			/* client: the name expected */
	char why[1400];			/* the first certificate refusal, ours */
};

/* ---- a socket BIO that never raises SIGPIPE --------------------------- */

/* Sends what wbuf holds: 1 when it is empty, 0 when the socket would block,
 * -1 on an error (in sys_err). */
static int wbuf_flush(struct channel_tls *t)
{
	while (t->woff < t->wlen) {
		ssize_t n = send(t->fd, t->wbuf + t->woff, t->wlen - t->woff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			t->sys_err = errno;
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		}
		t->woff += (size_t)n;
	}
	t->woff = t->wlen = 0;
	return 1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
	struct channel_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	/* Records already gathered go first; in tls_send, this one joins them
	 * when it fits. */
	if (t->wlen && (!t->gather || t->wlen + (size_t)len > WBUF_SIZE)) {
		int f = wbuf_flush(t);
		if (f <= 0) {
			if (f == 0)
				BIO_set_retry_write(b);
			return -1;
		}
	}
	if (t->gather && (size_t)len <= WBUF_SIZE - t->wlen) {
		memcpy(t->wbuf + t->wlen, buf, (size_t)len);
		t->wlen += (size_t)len;
		return len;
	}
	ssize_t n = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0)
		return (int)n;
	t->sys_err = errno;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		BIO_set_retry_write(b);
	return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct channel_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (t->roff == t->rlen) {
		ssize_t n = recv(t->fd, t->rbuf, RBUF_SIZE, MSG_DONTWAIT);
		if (n > 0 && t->first < 0)
			t->first = t->rbuf[0];
		if (n == 0)
			t->eof = true;
		if (n <= 0) {
			if (n < 0) {
				t->sys_err = errno;
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					BIO_set_retry_read(b);
			}
			return (int)n;
		}
		t->roff = 0;
		t->rlen = (size_t)n;
	}
	size_t k = MIN((size_t)len, t->rlen - t->roff);
	memcpy(buf, t->rbuf + t->roff, k);
	t->roff += k;
	return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int attach_bio(struct channel_tls *t, struct err *e)
{
	t->meth = BIO_meth_new(BIO_TYPE_VMHOP, "vmhop socket");
	if (!t->meth || !BIO_meth_set_write(t->meth, bio_write) ||
	    !BIO_meth_set_read(t->meth, bio_read) || !BIO_meth_set_ctrl(t->meth, bio_ctrl) ||
	    !BIO_meth_set_create(t->meth, bio_create))
		return err__set(e, ENOMEM, "out of memory for TLS");
	BIO *b = BIO_new(t->meth);
	if (!b)
		return err__set(e, ENOMEM, "out of memory for TLS");
	BIO_set_data(b, t);
	SSL_set_bio(t->ssl, b, b);	/* the SSL owns it now */
	return 0;
}

/* ---- messages ------------------------------------------------------------ */

static void name_of(const X509_NAME *n, char *buf, size_t size)
{
	buf[0] = 0;
	BIO *m = BIO_new(BIO_s_mem());
	if (!m)
		return;
	if (n && X509_NAME_print_ex(m, n, 0, XN_FLAG_RFC2253) >= 0) {
		int len = BIO_read(m, buf, (int)size - 1);
		buf[len > 0 ? len : 0] = 0;
	}
	BIO_free(m);
}

static void time_of(const ASN1_TIME *tm, char *buf, size_t size)
{
	snprintf(buf, size, "?");
	BIO *m = BIO_new(BIO_s_mem());
	if (!m)
		return;
	if (tm && ASN1_TIME_print(m, tm)) {
		int len = BIO_read(m, buf, (int)size - 1);
		buf[len > 0 ? len : 0] = 0;
	}
	BIO_free(m);
}

static bool allowed(const struct channel_tls_server *s, X509 *cert, char *subject)
{
	char cn[256] = "";
	X509_NAME *n = X509_get_subject_name(cert);
	if (X509_NAME_get_text_by_NID(n, NID_commonName, cn, sizeof(cn)) < 0)
		cn[0] = 0;
	for (unsigned i = 0; i < s->nr_allow; i++)
		if ((cn[0] && !strcmp(s->allow[i], cn)) || !strcmp(s->allow[i], subject))
			return true;
	return false;
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct channel_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *cert = X509_STORE_CTX_get_current_cert(x);
	if (!t)
		return ok;
	/* Messages name the peer's own certificate, whichever in its chain
	 * failed. */
	X509 *leaf = X509_STORE_CTX_get0_cert(x);
	if (leaf)
		cert = leaf;
	char subject[256] = "", issuer[256] = "", when[64];
	if (cert) {
		name_of(X509_get_subject_name(cert), subject, sizeof(subject));
		name_of(X509_get_issuer_name(cert), issuer, sizeof(issuer));
	}
	if (!ok) {
		int err = X509_STORE_CTX_get_error(x);
		if (t->why[0])
			return 0;
		switch (err) {
		case X509_V_ERR_CERT_HAS_EXPIRED:
			time_of(cert ? X509_get0_notAfter(cert) : NULL, when, sizeof(when));
			snprintf(t->why, sizeof(t->why), "the certificate of %s (%s) expired on %s",
				 t->peer, subject, when);
			break;
		case X509_V_ERR_CERT_NOT_YET_VALID:
			time_of(cert ? X509_get0_notBefore(cert) : NULL, when, sizeof(when));
			snprintf(t->why, sizeof(t->why), "the certificate of %s (%s) is not valid "
				 "before %s", t->peer, subject, when);
			break;
		case X509_V_ERR_HOSTNAME_MISMATCH:
		case X509_V_ERR_IP_ADDRESS_MISMATCH:
			snprintf(t->why, sizeof(t->why), "the certificate of %s (%s) is not for the "
				 "name %s (name mismatch; --tls-name expects another name)", t->peer,
				 subject, t->name);
			break;
		case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
		case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
		case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		case X509_V_ERR_CERT_SIGNATURE_FAILURE:
			snprintf(t->why, sizeof(t->why), "the certificate of %s (%s, issued by %s) is "
				 "not signed by the CA in %s (unknown CA)", t->peer, subject, issuer,
				 t->ca);
			break;
		default:
			snprintf(t->why, sizeof(t->why), "the certificate of %s (%s) is refused: %s",
				 t->peer, subject, X509_verify_cert_error_string(err));
		}
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(x) == 0 && t->server && t->srv && t->srv->nr_allow &&
	    cert && !allowed(t->srv, cert, subject)) {
		snprintf(t->why, sizeof(t->why), "the certificate subject of %s (%s) is not "
			 "allowed (not in --tls-allow)", t->peer, subject);
		/* bad_certificate to the client */
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	return 1;
}

/* The handshake failed: the best one-line reason. */
static int handshake_err(struct channel_tls *t, int rc, int timeout_ms, struct err *e)
{
	unsigned long l = ERR_peek_last_error();
	int reason = ERR_GET_LIB(l) == ERR_LIB_SSL ? ERR_GET_REASON(l) : 0;
	const char *text = l ? ERR_reason_error_string(l) : NULL;
	char mine[256] = "";
	X509 *own = SSL_get_certificate(t->ssl);
	if (own)
		name_of(X509_get_subject_name(own), mine, sizeof(mine));
	const char *who = t->peer;
	if (t->why[0])
		return err__set(e, EACCES, "%s", t->why);
	if (rc == -ETIMEDOUT)
		return err__set(e, ETIMEDOUT, "TLS handshake with %s: no answer within %d ms", who,
				timeout_ms);
	if (!t->server && t->first >= 0 && (t->first < 0x14 || t->first > 0x18))
		return err__set(e, EPROTO, "%s answered in plaintext, not TLS: is it listening on "
				"tcp: instead of tls:?", who);
	switch (reason) {
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return err__set(e, EACCES, "%s does not trust our certificate (%s): it is not "
				"signed by a CA in the peer's --tls-ca (TLS alert: unknown CA)",
				who, mine);
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return err__set(e, EACCES, "%s refused our certificate (%s): it has expired "
				"(TLS alert: certificate expired)", who, mine);
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return err__set(e, EACCES, "%s requires a client certificate and we sent none "
				"(TLS alert: certificate required)", who);
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return err__set(e, EACCES, "%s presented no certificate: mutual TLS needs one "
				"(--tls-cert and --tls-key)", who);
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		if (t->server)
			return err__set(e, EACCES, "%s refused our certificate (%s): it is not for "
					"the name the client expects (TLS alert: bad certificate)",
					who, mine);
		return err__set(e, EACCES, "%s refused our certificate (%s): is its subject in "
				"the destination's --tls-allow? (TLS alert: bad certificate)", who, mine);
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return err__set(e, EPROTO, "%s does not speak TLS 1.3 (%s)", who,
				text ? text : "wrong version");
	default:
		break;
	}
	if (t->eof || (reason == 0 && (t->sys_err == ECONNRESET || t->sys_err == EPIPE)))
		return err__set(e, ECONNRESET, "%s closed the connection during the TLS handshake",
				who);
	if (reason == 0 && t->sys_err)
		return err__setsys(e, t->sys_err, "TLS handshake with %s", who);
	return err__set(e, EPROTO, "TLS handshake with %s failed: %s", who,
			text ? text : "unknown error");
}

/* ---- contexts ------------------------------------------------------------ */

static int missing(const char *uri, const struct channel_tls_opts *o, bool need_cert,
		   struct err *e)
{
	char what[64] = "";
	need_cert |= !o;
	if (!o || !o->ca)
		strcat(what, " --tls-ca");
	if (need_cert && (!o || !o->cert))
		strcat(what, " --tls-cert");
	if (need_cert && (!o || !o->key))
		strcat(what, " --tls-key");
	if (o && !need_cert && !o->cert != !o->key)
		strcat(what, !o->cert ? " --tls-cert" : " --tls-key");
	if (what[0])
		return err__set(e, EINVAL, "%s needs a CA, a certificate and a key; missing:%s", uri,
				what);
	return 0;
}

static int ssl_fail(struct err *e, const char *fmt, const char *file)
{
	unsigned long l = ERR_peek_last_error();
	const char *r = l ? ERR_reason_error_string(l) : NULL;
	char what[200];
	snprintf(what, sizeof(what), fmt, file);
	ERR_clear_error();
	return err__set(e, EINVAL, "%s: %s", what, r ? r : "unusable");
}

static int new_ctx(bool server, const struct channel_tls_opts *o, SSL_CTX **out, struct err *e)
{
	*out = NULL;
	ERR_clear_error();
	if (o->key) {
		struct stat st;
		if (stat(o->key, &st) < 0)
			return err__setsys(e, errno, "TLS key %s", o->key);
		if (st.st_mode & (S_IRGRP | S_IROTH))
			return err__set(e, EPERM, "TLS key %s is readable by group or others: "
					"refused (chmod 600 %s)", o->key, o->key);
	}
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return ssl_fail(e, "%sTLS context", "");
	int rc = 0;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		rc = ssl_fail(e, "%sTLS 1.3", "");
	if (!rc && SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1)
		rc = ssl_fail(e, "TLS CA %s", o->ca);
	if (!rc && o->cert && SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1)
		rc = ssl_fail(e, "TLS certificate %s", o->cert);
	if (!rc && o->key && SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
		unsigned long l = ERR_peek_last_error();
		if (ERR_GET_LIB(l) == ERR_LIB_X509 && ERR_GET_REASON(l) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			rc = err__set(e, EINVAL, "TLS key %s does not match its certificate %s",
				      o->key, o->cert);
		} else {
			rc = ssl_fail(e, "TLS key %s", o->key);
		}
	}
	if (!rc && o->key && SSL_CTX_check_private_key(ctx) != 1)
		rc = ssl_fail(e, "TLS key %s does not match its certificate", o->key);
	if (rc) {
		SSL_CTX_free(ctx);
		return rc;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
			   verify_cb);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* A peer's end without close_notify is an end like tcp:'s; the
	 * migration's own framing catches a truncated stream. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	*out = ctx;
	return 0;
}

static int on_ticket(SSL *ssl, SSL_SESSION *sess)
{
	(void)sess;
	struct channel_tls *t = SSL_get_app_data(ssl);
	if (t)
		t->ticket = true;
	return 0;	/* not kept: nobody resumes */
}

static struct channel_tls *new_session(SSL_CTX *ctx, int fd, bool server, struct err *e)
{
	struct channel_tls *t = calloc(1, sizeof(*t));
	if (!t) {
		err__set(e, ENOMEM, "out of memory for TLS");
		return NULL;
	}
	t->fd = fd;
	t->first = -1;
	t->server = server;
	t->wbuf = malloc(WBUF_SIZE);
	t->rbuf = malloc(RBUF_SIZE);
	if (!t->wbuf || !t->rbuf || !SSL_CTX_up_ref(ctx)) {
		free(t->wbuf);
		free(t->rbuf);
		free(t);
		err__set(e, ENOMEM, "out of memory for TLS");
		return NULL;
	}
	t->ctx = ctx;
	t->ssl = SSL_new(ctx);
	if (!t->ssl || attach_bio(t, e) < 0) {
		err__set(e, ENOMEM, "out of memory for TLS");
		SSL_free(t->ssl);
		BIO_meth_free(t->meth);
		SSL_CTX_free(ctx);
		free(t->wbuf);
		free(t->rbuf);
		free(t);
		return NULL;
	}
	SSL_set_app_data(t->ssl, t);
	return t;
}

static void free_session(struct channel_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	BIO_meth_free(t->meth);
	SSL_CTX_free(t->ctx);
	free(t->wbuf);
	free(t->rbuf);
	free(t);
	ERR_clear_error();
}

/* Runs step (SSL_connect, SSL_accept) without blocking until it is done or
 * deadline passes. */
static int drive(struct channel_tls *t, int (*step)(SSL *), uint64_t deadline)
{
	for (;;) {
		ERR_clear_error();
		t->sys_err = 0;
		int r = step(t->ssl);
		if (r == 1)
			return 0;
		int err = SSL_get_error(t->ssl, r);
		short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
		if (!ev)
			return -EPROTO;
		struct pollfd p = { .fd = t->fd, .events = ev };
		int ms = channel__ms_left(deadline), n;
		if (ms == 0)
			return -ETIMEDOUT;
		while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
			;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
	}
}

/* After a failed handshake: let the peer read our alert before the socket
 * goes. Closing with its bytes unread would reset the connection, and a
 * reset can destroy the alert before the peer reads it (and with it the
 * peer's message). Bounded: a peer that keeps talking is cut after 1 s. */
static void linger(int fd)
{
	if (fd < 0 || shutdown(fd, SHUT_WR) < 0)
		return;
	uint64_t deadline = util__now_ns() + 1000000000ULL;
	char sink[4096];
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = channel__ms_left(deadline);
		if (ms == 0 || poll(&p, 1, ms) <= 0)
			return;
		ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return;
	}
}

/* ---- the ops --------------------------------------------------------------- */

static int tls_listen(const char *uri, const struct channel_addr *a,
		      const struct channel_tls_opts *o, struct channel_listener *l, struct err *e)
{
	int rc = missing(uri, o, true, e);
	if (rc < 0)
		return rc;
	if (o->nr_allow > CHANNEL_TLS_ALLOW_MAX)
		return err__set(e, EINVAL, "at most %d allowed TLS subjects", CHANNEL_TLS_ALLOW_MAX);
	struct channel_tls_server *s = calloc(1, sizeof(*s));
	if (!s)
		return err__set(e, ENOMEM, "out of memory for TLS");
	s->handshake_ms = o->handshake_timeout_ms > 0 ? o->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
	snprintf(s->ca, sizeof(s->ca), "%s", o->ca);
	for (unsigned i = 0; i < o->nr_allow && !rc; i++)
		if (!(s->allow[s->nr_allow++] = strdup(o->allow[i])))
			rc = err__set(e, ENOMEM, "out of memory");
	if (!rc)
		rc = new_ctx(true, o, &s->ctx, e);
	/* One ticket, sent once the client is accepted: its verdict (above). */
	if (!rc && !SSL_CTX_set_num_tickets(s->ctx, 1))
		rc = ssl_fail(e, "%sTLS session tickets", "");
	l->tls = s;
	if (!rc)
		rc = channel__tcp_listen_fd(uri, a, "tls", l, e);
	if (rc < 0)
		channel__tls_ops.listener_close(l);
	return rc;
}

static void tls_listener_close(struct channel_listener *l)
{
	struct channel_tls_server *s = l->tls;
	if (s) {
		for (unsigned i = 0; i < s->nr_allow; i++)
			free(s->allow[i]);
		SSL_CTX_free(s->ctx);
		free(s);
		l->tls = NULL;
	}
	channel__fd_listener_close(l);
}

/* What a client that does not speak TLS sent, printable, for the message. */
static void show_bytes(const unsigned char *p, size_t n, char *buf, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < size; i++)
		o += (size_t)snprintf(buf + o, size - o, p[i] >= 0x20 && p[i] < 0x7f ? "%c" : "\\x%02x",
				      p[i]);
	buf[o] = 0;
}

/* Before the handshake: a client that speaks plaintext is told apart from
 * one with a bad certificate. 1: a TLS record starts; < 0: refused. */
static int first_bytes(int fd, const char *peer, uint64_t deadline, int timeout_ms, struct err *e)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int ms = channel__ms_left(deadline), n;
	while ((n = poll(&p, 1, ms ? ms : 1)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return err__setsys(e, errno, "TLS handshake with %s", peer);
	if (n == 0)
		return err__set(e, ETIMEDOUT, "TLS handshake with %s: no answer within %d ms", peer,
				timeout_ms);
	unsigned char b[12];
	ssize_t got = recv(fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
	if (got < 0)
		return err__setsys(e, errno, "TLS handshake with %s", peer);
	if (got == 0)
		return err__set(e, ECONNRESET, "%s closed the connection before the TLS handshake",
				peer);
	if (b[0] == 0x16)
		return 1;
	char shown[48];
	show_bytes(b, (size_t)got, shown, sizeof(shown));
	return err__set(e, EPROTO, "%s does not speak TLS: it sent plaintext (\"%s\"); is it "
			"connecting to tcp: instead of tls:?", peer, shown);
}

static int tls_accepted(struct channel_listener *l, int fd, struct channel *c, struct err *e)
{
	struct channel_tls_server *s = l->tls;
	int rc = channel__fd_accepted(l, fd, c, e);
	if (rc < 0)
		return rc;
	char peer[CHANNEL_URI_MAX + 16];
	snprintf(peer, sizeof(peer), "the client %s", c->peer);
	uint64_t deadline = util__now_ns() + (uint64_t)s->handshake_ms * 1000000ULL;
	rc = first_bytes(fd, peer, deadline, s->handshake_ms, e);
	struct channel_tls *t = NULL;
	if (rc > 0) {
		t = new_session(s->ctx, fd, true, e);
		rc = t ? 0 : -ENOMEM;
	}
	if (t) {
		snprintf(t->peer, sizeof(t->peer), "%s", peer);
		snprintf(t->ca, sizeof(t->ca), "%s", s->ca);
		t->srv = s;
		rc = drive(t, SSL_accept, deadline);
		t->srv = NULL;
		if (rc < 0)
			rc = handshake_err(t, rc, s->handshake_ms, e);
	}
	if (rc < 0) {
		free_session(t);
		linger(c->fd);
		channel__fd_close(c);
		return rc;
	}
	t->established = true;
	c->tls = t;
	return 0;
}

/* The client's handshake is done; wait for the listener's verdict on our
 * certificate: its ticket (accepted), an alert (refused) or data. */
static int await_verdict(struct channel_tls *t, uint64_t deadline)
{
	for (;;) {
		if (t->ticket)
			return 0;
		unsigned char b;
		size_t n;
		ERR_clear_error();
		t->sys_err = 0;
		int r = SSL_peek_ex(t->ssl, &b, 1, &n);
		if (r == 1 || t->ticket)
			return 0;
		int err = SSL_get_error(t->ssl, r);
		if (err == SSL_ERROR_ZERO_RETURN) {
			t->eof = true;
			return -ECONNRESET;
		}
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
			return -EPROTO;
		struct pollfd p = { .fd = t->fd, .events = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT };
		int ms = channel__ms_left(deadline), k;
		if (ms == 0)
			return -ETIMEDOUT;
		while ((k = poll(&p, 1, ms)) < 0 && errno == EINTR)
			;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ETIMEDOUT;
	}
}

static int tls_connect(const char *uri, const struct channel_addr *a, int timeout_ms,
		       const struct channel_tls_opts *o, struct channel *c, struct err *e)
{
	int rc = missing(uri, o, false, e);
	if (rc < 0)
		return rc;
	int ms = timeout_ms > 0 ? timeout_ms : DEFAULT_HANDSHAKE_MS;
	uint64_t deadline = util__now_ns() + (uint64_t)ms * 1000000ULL;
	SSL_CTX *ctx;
	if ((rc = new_ctx(false, o, &ctx, e)) < 0)
		return rc;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_ticket);
	rc = channel__tcp_connect_fd(uri, a, timeout_ms, &c->fd, e);
	struct channel_tls *t = rc < 0 ? NULL : new_session(ctx, c->fd, false, e);
	SSL_CTX_free(ctx);	/* the session holds its own reference */
	if (!rc && !t)
		rc = -ENOMEM;
	if (t) {
		const char *name = o->name ? o->name : a->host;
		unsigned char ip[16];
		bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
		snprintf(t->peer, sizeof(t->peer), "%s", uri);
		snprintf(t->ca, sizeof(t->ca), "%s", o->ca);
		snprintf(t->name, sizeof(t->name), "%s", name);
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1 :
			    (SSL_set1_host(t->ssl, name) != 1 ||
			     SSL_set_tlsext_host_name(t->ssl, name) != 1))
			rc = err__set(e, EINVAL, "TLS: cannot expect the name %s", name);
		if (!rc && (rc = drive(t, SSL_connect, deadline)) == 0)
			rc = await_verdict(t, deadline);
		if (rc < 0 && !e->code)
			rc = handshake_err(t, rc, ms, e);
	}
	if (rc < 0) {
		free_session(t);
		linger(c->fd);
		channel__fd_close(c);
		return rc;
	}
	t->established = true;
	c->tls = t;
	return 0;
}

static ssize_t io_fail(struct channel_tls *t, int r, bool reading, short *want)
{
	int err = SSL_get_error(t->ssl, r);
	ERR_clear_error();
	switch (err) {
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return reading ? 0 : -EPIPE;
	case SSL_ERROR_SYSCALL:
		t->fatal = true;
		if (t->sys_err && t->sys_err != EAGAIN && t->sys_err != EWOULDBLOCK)
			return -t->sys_err;
		return reading ? 0 : -EPIPE;
	default:
		t->fatal = true;
		return t->sys_err == ECONNRESET || t->sys_err == EPIPE ? -t->sys_err : -EPROTO;
	}
}

static ssize_t tls_send(struct channel *c, const void *buf, size_t len, short *want)
{
	struct channel_tls *t = c->tls;
	if (!t || c->fd < 0)
		return -EBADF;
	ERR_clear_error();
	t->sys_err = 0;
	/* The caller retries a send that would block with the same bytes (as
	 * SSL_write wants): once the records of an earlier write are out, it
	 * is told that write's count. */
	if (t->owed) {
		int f = wbuf_flush(t);
		if (f == 0) {
			*want = POLLOUT;
			return -EAGAIN;
		}
		if (f < 0) {
			t->fatal = true;
			return t->sys_err ? -t->sys_err : -EPIPE;
		}
		size_t n = t->owed;
		t->owed = 0;
		return (ssize_t)n;
	}
	size_t n;
	t->gather = true;
	int r = SSL_write_ex(t->ssl, buf, MIN(len, (size_t)WRITE_GATHER), &n);
	t->gather = false;
	if (r != 1)
		return io_fail(t, r, false, want);
	int f = wbuf_flush(t);
	if (f == 1)
		return (ssize_t)n;
	if (f < 0) {
		t->fatal = true;
		return t->sys_err ? -t->sys_err : -EPIPE;
	}
	t->owed = n;
	*want = POLLOUT;
	return -EAGAIN;
}

static ssize_t tls_recv(struct channel *c, void *buf, size_t len, short *want)
{
	struct channel_tls *t = c->tls;
	if (!t || c->fd < 0)
		return -EBADF;
	if (!len)
		return 0;
	size_t n;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_read_ex(t->ssl, buf, len, &n);
	return r == 1 ? (ssize_t)n : io_fail(t, r, true, want);
}

static int tls_settle(struct channel *c);

/* Data the socket will not announce: decrypted bytes, or whole records in
 * the read-ahead buffer (a part of one needs the socket anyway). */
static int tls_buffered(struct channel *c)
{
	const struct channel_tls *t = c->tls;
	if (!t)
		return 0;
	if (SSL_pending(t->ssl) > 0)
		return 1;
	return t->roff < t->rlen && tls_settle(c);
}

static int tls_settle(struct channel *c)
{
	struct channel_tls *t = c->tls;
	if (!t)
		return 1;
	unsigned char b;
	size_t n;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_peek_ex(t->ssl, &b, 1, &n);
	if (r == 1)
		return 1;
	int err = SSL_get_error(t->ssl, r);
	ERR_clear_error();
	return err == SSL_ERROR_WANT_READ ? 0 : 1;
}

static void tls_close(struct channel *c)
{
	struct channel_tls *t = c->tls;
	if (t && t->established && !t->fatal && c->fd >= 0) {
		/* Best effort, without waiting: the peer may be gone. */
		ERR_clear_error();
		(void)SSL_shutdown(t->ssl);
	}
	free_session(t);
	c->tls = NULL;
	channel__fd_close(c);
}

/* The subject of the certificate the peer presented: verified by the
 * handshake (a session only exists once it was). */
static void tls_identity(const struct channel *c, char *buf, size_t size)
{
	const struct channel_tls *t = c->tls;
	X509 *cert = t && t->established ? SSL_get0_peer_certificate(t->ssl) : NULL;
	buf[0] = 0;
	if (cert)
		name_of(X509_get_subject_name(cert), buf, size);
}

const struct channel_ops channel__tls_ops = {
	.scheme = "tls",
	.listen = tls_listen,
	.accepted = tls_accepted,
	.listener_close = tls_listener_close,
	.connect = tls_connect,
	.send = tls_send,
	.recv = tls_recv,
	.buffered = tls_buffered,
	.settle = tls_settle,
	.close = tls_close,
	.identity = tls_identity,
};
