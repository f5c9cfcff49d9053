/* rdma: on a machine without RDMA (this one): the URIs parse like tcp:'s,
 * and listening or connecting fails at once with the one message that says
 * what to do. Where an RDMA device exists those two cases are skipped: the
 * transfers themselves are tested inside a soft-RoCE guest (tests/rdma/). The
 * zero-copy region calls say -EOPNOTSUPP on a transport that copies. */
#include <check.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhop/channel.h"

#define NO_DEVICE "no RDMA device: load rdma_rxe or use tcp:"

static bool have_rdma(void)
{
	int n = 0;
	struct ibv_device **l = ibv_get_device_list(&n);
	if (l)
		ibv_free_device_list(l);
	return l && n > 0;
}

static void parse_ok(const char *uri, bool listen, const char *host, const char *port)
{
	struct channel_addr a;
	struct err e = { 0 };
	ck_assert_msg(channel__parse_uri(uri, listen, &a, &e) == 0, "%s: %s", uri, e.msg);
	ck_assert_int_eq(a.kind, CHANNEL_RDMA);
	ck_assert_str_eq(a.host, host);
	ck_assert_str_eq(a.port, port);
}

static void parse_bad(const char *uri, bool listen, const char *words)
{
	struct channel_addr a;
	struct err e = { 0 };
	ck_assert_msg(channel__parse_uri(uri, listen, &a, &e) == -EINVAL, "%s accepted", uri);
	ck_assert_msg(strstr(e.msg, uri) && strstr(e.msg, words), "%s: %s", uri, e.msg);
}

START_TEST(uri_good)
{
	parse_ok("rdma:192.168.77.1:4791", false, "192.168.77.1", "4791");
	parse_ok("rdma:node-b:7000", false, "node-b", "7000");
	parse_ok("rdma:[fe80::1]:18515", false, "fe80::1", "18515");
	parse_ok("rdma:0.0.0.0:0", true, "0.0.0.0", "0");
}
END_TEST

START_TEST(uri_bad)
{
	parse_bad("rdma:10.0.0.1", false, "missing :PORT");
	parse_bad("rdma::4791", false, "host");
	parse_bad("rdma:10.0.0.1:0", false, "port");
	parse_bad("rdma:10.0.0.1:65536", true, "port");
	parse_bad("rdma:fe80::1:4791", false, "brackets");
	parse_bad("rdmax:10.0.0.1:1", false, "rdma:HOST:PORT");
}
END_TEST

START_TEST(connect_without_device)
{
	if (have_rdma()) {
		printf("SKIP connect_without_device: this machine has an RDMA device\n");
		return;
	}
	struct channel c;
	struct err e = { 0 };
	int rc = channel__connect("rdma:127.0.0.1:4791", 1000, &c, &e);
	ck_assert_int_eq(rc, -ENODEV);
	ck_assert_msg(strstr(e.msg, NO_DEVICE) && strstr(e.msg, "rdma:127.0.0.1:4791"), "%s", e.msg);
	ck_assert_int_eq(c.fd, -1);
}
END_TEST

START_TEST(listen_without_device)
{
	if (have_rdma()) {
		printf("SKIP listen_without_device: this machine has an RDMA device\n");
		return;
	}
	struct channel_listener l;
	struct err e = { 0 };
	int rc = channel__listen("rdma:0.0.0.0:0", &l, &e);
	ck_assert_int_eq(rc, -ENODEV);
	ck_assert_msg(strstr(e.msg, NO_DEVICE), "%s", e.msg);
	ck_assert_int_eq(l.fd, -1);
}
END_TEST

START_TEST(region_unsupported_elsewhere)
{
	struct channel a, b;
	struct channel_region *rg = (void *)1;
	struct err e = { 0 };
	static char mem[4096];
	ck_assert_msg(channel__pair(&a, &b, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(channel__region_add(&a, mem, sizeof(mem), &rg, &e), -EOPNOTSUPP);
	ck_assert_ptr_null(rg);
	ck_assert_msg(strstr(e.msg, "copies"), "%s", e.msg);
	ck_assert_int_eq(channel__write_region(&a, NULL, 0, 1), -EOPNOTSUPP);
	channel__region_del(&a, NULL);
	channel__close(&a);
	channel__close(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("channel-rdma");
	TCase *tc = tcase_create("rdma");
	tcase_add_test(tc, uri_good);
	tcase_add_test(tc, uri_bad);
	tcase_add_test(tc, connect_without_device);
	tcase_add_test(tc, listen_without_device);
	tcase_add_test(tc, region_unsupported_elsewhere);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
