# tests/e2e: sources and tests are added here
