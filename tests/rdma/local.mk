# tests/rdma/: RDMA transport tests inside a TCG guest with soft-RoCE (rdma_rxe).
