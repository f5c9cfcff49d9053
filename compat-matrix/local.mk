# compat-matrix: sources and tests are added here
