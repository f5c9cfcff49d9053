# tests/cluster/: namespace hosts, agents, evacuation and the OCF agent.
# Root and /dev/kvm needed (network and mount namespaces); they skip loudly
# without. cluster.py is the harness; the tests import it from their own
# directory (and vmhoptest from tests/e2e, see PY_LOG_COMPILER).
CLUSTER_TESTS = \
	tests/cluster/test-agent.py \
	tests/cluster/test-evacuate.py \
	tests/cluster/test-evacuate-rules.py \
	tests/cluster/test-evacuate-agent-killed.py \
	tests/cluster/test-ocf-tester.py \
	tests/cluster/test-pacemaker.py
TESTS += $(CLUSTER_TESTS)
EXTRA_DIST += $(CLUSTER_TESTS) tests/cluster/cluster.py tests/cluster/pcmk.py \
	tests/cluster/README.md
