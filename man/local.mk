# man: sources and tests are added here
