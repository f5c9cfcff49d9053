#!/usr/bin/env python3
"""The rdma: transport inside a soft-RoCE guest (see rdma.py); exits 0, 1 or 77."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rdma  # noqa: E402

sys.exit(rdma.main())
