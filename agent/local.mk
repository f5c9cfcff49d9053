# agent/: the per-host agent and the evacuation planner.
