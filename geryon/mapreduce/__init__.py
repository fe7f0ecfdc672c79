"""MapReduce (the layout move brings the rest of the engine here)."""
