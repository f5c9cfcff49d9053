#!/usr/bin/env python3
"""Nested scenario 'snapshot-disk' (see nested.py --list); exits 0, 1 or 77."""
import sys

import nested

sys.exit(nested.main(["nested.py", "snapshot-disk"]))
