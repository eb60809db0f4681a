"""Flow table and per-direction TCP reassembly: the one mutable owner of packet state."""
