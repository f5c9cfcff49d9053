# tests/cluster/: namespace hosts, agents, evacuation and the OCF agent.
